"""Two real vLLM CPU replicas behind one HTTP backend: the session's `server` and a second one started
here (tests/engines/conftest.py), and a refine run through both in which the second is killed mid-run.
Nothing is lost: every node is annotated, no failure is recorded, and the first replica serves the rest.
Skips, saying why, where the vLLM venv cannot be made."""

from __future__ import annotations

import logging
import re
import signal
import threading
import urllib.request

import pytest

from action100m.backends import build_backend
from action100m.refine.answer import ANNOTATION_SCHEMA
from action100m.refine.prompt import PromptConfig
from data_build.refine import RefineConfig, refine_records
from tests.data_build.test_refine import SELECTED, node_named, small_record
from tests.engines.conftest import NAME, READY_TIMEOUT_S, VENV_TIMEOUT_S, stop_server, vllm_server
from tests.engines.test_vllm_server import NO_RULES

# the session's server, then a second start-up, then the run
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(VENV_TIMEOUT_S + 2 * READY_TIMEOUT_S + 180)]
RECORDS = 6  # x 4 selected nodes x 3 rounds: 72 requests, about half of them to each replica
KILL_AFTER = 3  # requests of the run the second replica finished first


def metric(url: str, name: str) -> int:
    """The replica's Prometheus metric `name` (vllm:...), summed over its labels."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return round(sum(float(n) for n in re.findall(rf"^{name}\{{.*\}} (\S+)$", text, re.M)))


def finished_requests(url: str) -> int:
    return metric(url, "vllm:request_success_total")


def test_a_replica_killed_mid_refine_loses_nothing_and_the_other_serves_the_rest(
    server, vllm_venv, tiny_dir, tmp_path, caplog
):
    def llm(*urls: str):
        return build_backend(
            {
                "interface": "llm",
                "kind": "openai",
                "model": NAME,
                "generation": {"max_new_tokens": 512},
                "http": {
                    "base_urls": list(urls),
                    "concurrency": 2,
                    "timeout_s": 120,
                    "max_retries": 1,
                    "backoff_base_s": 0.1,
                    "breaker_failures": 2,
                    "breaker_wait_s": 120,
                    "breaker_backoff_max_s": 2,
                },
            }
        )

    with vllm_server(vllm_venv, tiny_dir, tmp_path / "second.log") as (second, process):
        with llm(second) as warm_up:  # its first schema compiles slowly: the run then splits evenly
            assert isinstance(
                warm_up.complete([[{"role": "user", "content": "hi"}]], ANNOTATION_SCHEMA)[0], str
            )
        first_before, second_before = finished_requests(server), finished_requests(second)
        backend = llm(server, second)
        killed: list[int] = []
        seen: list[object] = []  # what the killer saw last: the second replica's count, or its error
        run_over = threading.Event()

        def kill_second_mid_run() -> None:
            try:  # once it finished a few requests of the run, while it runs more
                while (done := finished_requests(second) - second_before) < KILL_AFTER or not metric(
                    second, "vllm:num_requests_running"
                ):
                    seen[:] = [done]
                    if run_over.wait(0.05):
                        return
            except OSError as err:
                seen[:] = [err]
                return
            stop_server(process, signal.SIGKILL)  # a crash: no graceful end of its requests in flight
            killed.append(done)

        killer = threading.Thread(target=kill_second_mid_run)
        records = [small_record(f"v{i}") for i in range(RECORDS)]
        cfg = RefineConfig(
            rounds=3, rules=NO_RULES, prompt=PromptConfig(tokenizer=str(tiny_dir), token_budget=1024)
        )
        try:
            with caplog.at_level(logging.WARNING):
                killer.start()
                result = refine_records(records, cfg, backend)
        finally:
            run_over.set()
            killer.join()
            backend.close()
        first_served = finished_requests(server) - first_before

    assert killed and killed[0] >= KILL_AFTER, f"the second replica was not killed mid-run: {seen}"
    assert result.failures == [] and result.incomplete == []
    assert result.annotated == RECORDS * len(SELECTED) and result.llm_calls == RECORDS * len(SELECTED) * 3
    for record in records:
        for name in SELECTED:
            refine = node_named(record, name).provenance["refine"]
            assert refine["complete"] and [r["status"] for r in refine["rounds"]] == ["valid"] * 3
    # every request the second replica did not finish before it died, the first one served (the second
    # may have finished its `concurrency` requests in flight between the count and the kill)
    assert first_served >= result.llm_calls - killed[0] - 2
    assert f"{second}: " in caplog.text and "its requests go to the other replicas" in caplog.text
