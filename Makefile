# The README's commands. Everything the project needs is installed by `make setup` into .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# the exact versions the suite passed with (README: Dependencies and the lock)
LOCK := requirements/lock.txt

.PHONY: setup test lock demo bench lint clean cluster-smoke reliability gpu-bundle gpu-rehearsal

setup: $(STAMP)

# Re-installs only when pyproject.toml or the lock changes, so a second `make setup` takes a second.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev]"
	$(PY) -c "import torch, torchvision, decord, av; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	@touch $(STAMP)

# first a line for each installed package that is not at its locked version (an error only with CI=true)
test: setup
	$(PY) -m action100m.utils.lockcheck $(LOCK) --venv-python .venv-vllm/bin/python requirements/vllm-lock.txt
	$(PY) -m pytest $(PYTEST_ARGS)

# re-resolve, run the whole suite on the result, and write requirements/ if it passes (engines/lock.sh);
# LOCK_UPGRADE="av" re-resolves only av, LOCK_PYTEST_ARGS="tests/utils" rehearses on a subset
lock:
	PYTHON=$(PYTHON) LOCK_UPGRADE="$(LOCK_UPGRADE)" LOCK_PYTEST_ARGS="$(LOCK_PYTEST_ARGS)" bash engines/lock.sh

demo: setup
	$(VENV)/bin/action100m demo

# The cluster path through the real engines: a live one-node SLURM cluster and a vLLM server on the CPU.
cluster-smoke: setup
	bash engines/slurm_cluster.sh up
	$(VENV)/bin/action100m cluster-smoke --out $(or $(OUT),runs/cluster-smoke)

# Kill, soak and hostile-input measurements across the whole system (benchmarks/reliability.py);
# FULL=1 soaks the HTTP backend for 30 minutes and runs every input case.
reliability: setup
	$(PY) benchmarks/reliability.py $(if $(FULL),,--quick)

# The GPU measurement on a lent GPU machine's own Python (README: The GPU measurement). gpu-bundle puts
# what that machine lacks in .gpu-bundle/ and prints the command to give it; gpu-rehearsal runs that
# command here with --quick under a Python 3.12 venv of the machine's versions (GPU_PYTHON: a 3.12).
GPU_PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
GPU_VENV := .venv-gpu-rehearsal

gpu-bundle: setup
	$(PY) engines/gpu_bundle.py build

$(GPU_VENV)/.installed: requirements/gpu-machine.txt
	@test -n "$(GPU_PYTHON)" || { echo "gpu-rehearsal: no python3.12 found; set GPU_PYTHON" >&2; exit 2; }
	@test -x $(GPU_VENV)/bin/python || $(GPU_PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet -r requirements/gpu-machine.txt
	@touch $@

gpu-rehearsal: gpu-bundle $(GPU_VENV)/.installed
	$(PY) engines/gpu_bundle.py rehearse --python $(GPU_VENV)/bin/python --save runs/gpu-rehearsal/results.json
	$(VENV)/bin/action100m estimate train --from runs/gpu-rehearsal/results.json --allow-quick

bench: setup
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script --quick; done

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .gpu-bundle $(GPU_VENV)
