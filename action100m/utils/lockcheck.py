"""Installed versions against a lock file (requirements/lock.txt, requirements/vllm-lock.txt): one line
per package that differs, is missing, or is installed without being locked. `make test` runs it first:

    python -m action100m.utils.lockcheck requirements/lock.txt \
        --venv-python .venv-vllm/bin/python requirements/vllm-lock.txt

A venv whose python does not exist is skipped (the vLLM venv is made only where its tests run). Exit
status 0 unless something differs and CI=true: a user who installed a package by hand still gets to run
the tests, told which packages are not at the tested versions.

Not counted, as `pip freeze --exclude-editable` leaves them out of a lock: pip, setuptools, wheel,
editable installs (action100m itself), and the `vllm` alias engines/vllm_venv.sh writes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# packaging is not a direct dependency, but transformers and lightning require it, so it is always there
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

NOT_LOCKED = {"pip", "setuptools", "wheel", "distribute", "action100m"}
ALIAS_INSTALLER = "engines/vllm_venv.sh"  # the INSTALLER of the `vllm` dist-info alias (not a real install)
HINT = (
    "lock: not the tested versions (README: Dependencies and the lock): `rm .venv/.installed; make setup` "
    "reinstalls the locked ones (`rm -r .venv-vllm; bash engines/vllm_venv.sh` in the vLLM venv), "
    "`make lock` records new ones"
)

# Run in a fresh `python -I` (no current directory on sys.path, so the checkout's action100m.egg-info
# is not found as a second distribution) with the stdlib only: the vLLM venv may lack packaging.
LIST_SCRIPT = """
import importlib.metadata as m, json
rows = []
for d in m.distributions():
    installer = (d.read_text("INSTALLER") or "").strip()
    editable = json.loads(d.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable", False)
    rows.append([d.metadata["Name"], d.version, installer, editable])
print(json.dumps(rows))
"""


def read_lock(path: str | os.PathLike) -> dict[str, str]:
    """`name==version` lines of a lock file by canonical name; comments and blank lines skipped."""
    pins = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: not a name==version pin: {line!r}")
        pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def installed_versions(python: str | os.PathLike | None = None) -> dict[str, str]:
    """What `python` (default: this interpreter) has installed, by canonical name, less the unlocked kinds."""
    listed = subprocess.run(
        [str(python or sys.executable), "-I", "-c", LIST_SCRIPT], capture_output=True, text=True, check=True
    )
    versions: dict[str, str] = {}
    for name, version, installer, editable in json.loads(listed.stdout):
        name = canonicalize_name(name or "")
        if not name or name in NOT_LOCKED or editable or installer == ALIAS_INSTALLER:
            continue
        versions.setdefault(name, version)  # the first on sys.path is the one imported
    return versions


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def differences(
    lock: dict[str, str], installed: dict[str, str], lock_name: str, where: str = ""
) -> list[str]:
    """One line per difference; `where` (" in .venv-vllm") names an environment other than this one."""
    lines = []
    for name in sorted(lock.keys() | installed.keys()):
        have, want = installed.get(name), lock.get(name)
        if have is None:
            lines.append(f"lock: {name} not installed{where}, {lock_name} has {want}")
        elif want is None:
            lines.append(f"lock: {name} {have} installed{where}, not in {lock_name}")
        elif not same_version(have, want):
            lines.append(f"lock: {name} {have} installed{where}, {lock_name} has {want}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m action100m.utils.lockcheck", description=__doc__.split("\n")[0]
    )
    parser.add_argument("lock", help="the lock of this interpreter's environment")
    parser.add_argument(
        "--venv-python",
        nargs=2,
        action="append",
        default=[],
        metavar=("PYTHON", "LOCK"),
        help="also check another venv's python against its lock (skipped when PYTHON does not exist)",
    )
    args = parser.parse_args(argv)
    lines = differences(read_lock(args.lock), installed_versions(), args.lock)
    for python, lock in args.venv_python:
        if not Path(python).exists():
            continue
        venv = Path(python).parent.parent.name
        try:
            lines += differences(read_lock(lock), installed_versions(python), lock, f" in {venv}")
        except subprocess.CalledProcessError as err:  # a broken venv is a difference, not a crash
            lines.append(f"lock: {python} could not list its packages: {err.stderr.strip()[-200:]}")
    if not lines:
        return 0
    print("\n".join([*lines, HINT]), flush=True)
    return 1 if os.environ.get("CI") == "true" else 0


if __name__ == "__main__":
    sys.exit(main())
