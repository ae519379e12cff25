# The README's commands. Everything the project needs is installed by `make setup` into .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test demo bench lint clean cluster-smoke reliability

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so a second `make setup` takes a second.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -c "import torch, torchvision, decord, av; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	@touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

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

bench: setup
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script --quick; done

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
