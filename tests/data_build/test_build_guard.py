"""A server that refuses what the build sends stops the build instead of yielding a done, empty
dataset: the canary before the first video (data_build/canary.py), the failure-rate guard after each
stage of a batch (data_build/guard.py). Against the fault-injecting server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from action100m.errors import StageError
from action100m.testing.fake_server import FakeChatServer, Status
from data_build.canary import CanaryFailed
from data_build.guard import FailureRateExceeded, GuardConfig, check_failure_rate, failure_kind
from data_build.run import PendingFailures, run_build
from tests.data_build.test_build_serving import CANARY_REQUESTS, reply, served_config, synth  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def refusing_after(count: int, status: int = 400, only_schema: bool = False):
    """A script: the first `count` requests answered, then `status` for every one (of refinement's, the
    only requests with a schema, when `only_schema`)."""

    def script(index: int, messages: list[dict]) -> object:
        if index < count:
            return "ok"
        if only_schema and not _is_refine(messages):
            return "ok"
        return Status(status)

    return script


def _is_refine(messages: list[dict]) -> bool:
    return messages[0].get("role") == "system"  # the refine prompt opens with its system message


def shard_files(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("*")) if (out / "shards").is_dir() else []


def test_failure_kinds_group_what_failed_the_same_way():
    assert failure_kind("frame_caption: openai backend, model 'm': HTTP 400: bad request") == "HTTP 400"
    assert failure_kind("round 1: backend: empty content (finish_reason=stop)") == "empty content"
    assert failure_kind("round 3: action.brief: more than 8 words") == "unusable answer"
    assert failure_kind("segment_caption: openai backend, model 'm': empty content (x)") == "empty content"


def test_the_guard_trips_on_one_kind_past_its_share_and_not_below():
    def failures(n: int, reason: str) -> list[StageError]:
        return [StageError(f"v{i}", "refine", reason, f"n{i}") for i in range(n)]

    cfg = GuardConfig(max_share=0.05, min_failures=3)
    mixed = failures(2, "round 1: backend: HTTP 400: a") + failures(2, "round 1: backend: HTTP 422: b")
    role_of = {id(f): "refine.llm" for f in mixed}
    check_failure_rate(mixed, {"refine.llm": 10}, role_of, cfg)  # no kind reaches min_failures
    storm = failures(3, "round 1: backend: HTTP 400: a")
    role_of = {id(f): "refine.llm" for f in storm}
    check_failure_rate(storm, {"refine.llm": 100}, role_of, cfg)  # 3% of 100
    with pytest.raises(FailureRateExceeded, match=r"refine\.llm at a local model: 3 of 20 .* HTTP 400"):
        check_failure_rate(storm, {"refine.llm": 20}, role_of, cfg)  # 15% of 20
    retryable = failures(5, "round 1: backend: timed out")
    for failure in retryable:
        failure.retryable = True  # the server's state, not its answer: PendingFailures handles those
    check_failure_rate(retryable, {"refine.llm": 5}, {id(f): "refine.llm" for f in retryable}, cfg)


def test_a_server_refusing_every_request_stops_the_build_before_the_first_video(synth, tmp_path):  # noqa: F811
    """Issue 30's measurement: a server listing the model and answering 400 to every request gave a
    done shard with nothing annotated and exit 0."""
    out = tmp_path / "out"
    with FakeChatServer(reply=reply, script=refusing_after(0)) as server:
        with pytest.raises(CanaryFailed) as raised:
            run_build(served_config(synth / "manifest.jsonl", out, server))
        assert server.requests_total <= CANARY_REQUESTS
    message = str(raised.value)
    assert "\n" not in message
    assert f"caption.frame_captioner (fake-model) at {server.base_url}" in message
    assert "HTTP 400: scripted status 400" in message  # the status and the reply's error
    assert not (out / "work" / "videos").exists() and shard_files(out) == []


def test_a_refusing_llm_fails_the_build_command_in_one_line(synth, tmp_path):  # noqa: F811
    """The command's exit status and message: only the LLM refuses (the captions are answered)."""
    out = tmp_path / "out"
    with FakeChatServer(reply=reply, script=refusing_after(0, only_schema=True)) as server:
        overrides = [
            f"input={synth / 'manifest.jsonl'}",
            f"output={out}",
            "build=cluster_smoke",
            "progress=false",
            "refine.llm.model=fake-model",
            f"refine.llm.http.base_url={server.base_url}",
            "refine.llm.http.max_retries=0",
        ]
        done = subprocess.run(
            [sys.executable, str(ROOT / "data_build" / "build.py"), *overrides],
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("build: error:")]
    assert f"canary: refine.llm (fake-model) at {server.base_url}" in line
    assert "HTTP 400: scripted status 400" in line
    assert shard_files(out) == []


def test_a_4xx_storm_stops_the_batch_and_the_rerun_asks_for_exactly_those(synth, tmp_path):  # noqa: F811
    manifest, out = synth / "manifest.jsonl", tmp_path / "out"
    with FakeChatServer(reply=reply, script=refusing_after(CANARY_REQUESTS + 5)) as storm:
        with pytest.raises(FailureRateExceeded) as raised:
            run_build(served_config(manifest, out, storm))
    message = str(raised.value)
    assert "failure-rate guard: caption." in message and f"at {storm.base_url}" in message
    assert "HTTP 400" in message and "nothing of this batch is marked done" in message
    assert shard_files(out) == []
    caches = [json.loads(p.read_text()) for p in (out / "work" / "videos").glob("*/caption-*.json")]
    reopened = [f for cache in caches for f in cache["failures"]]
    assert reopened and all(f["retryable"] for f in reopened)

    with FakeChatServer(reply=reply) as healthy:
        summary = run_build(served_config(manifest, out, healthy))
    assert summary["failures"] == 0 and summary["samples"] == 4
    assert summary["annotated_nodes"] > 0


def test_a_refine_storm_reopens_its_nodes_for_the_rerun(synth, tmp_path):  # noqa: F811
    manifest, out = synth / "manifest.jsonl", tmp_path / "out"
    script = refusing_after(CANARY_REQUESTS, only_schema=True)
    with FakeChatServer(reply=reply, script=script) as storm:
        with pytest.raises(FailureRateExceeded, match=r"failure-rate guard: refine\.llm .*HTTP 400"):
            run_build(served_config(manifest, out, storm))
    assert shard_files(out) == []
    with FakeChatServer(reply=reply) as healthy:
        summary = run_build(served_config(manifest, out, healthy))
        assert healthy.requests_total > CANARY_REQUESTS  # the refused nodes were asked again
    assert summary["failures"] == 0 and summary["annotated_nodes"] > 0


def test_content_failures_under_the_share_stay_recorded_as_before(synth, tmp_path):  # noqa: F811
    out = tmp_path / "out"

    def one_refusal(index: int, messages: list[dict]) -> object:
        return Status(400) if index == CANARY_REQUESTS + 3 else "ok"

    with FakeChatServer(reply=reply, script=one_refusal) as server:
        summary = run_build(served_config(synth / "manifest.jsonl", out, server))
    assert summary["failures"] == 1 and summary["built"] == 2


def test_a_canary_whose_server_is_down_is_a_retryable_stop(synth, tmp_path):  # noqa: F811
    server = FakeChatServer(reply=reply).start()
    server.stop()  # nothing listens at its address any more
    cfg = served_config(
        synth / "manifest.jsonl", tmp_path / "out", server, check_model=False, breaker_failures=0
    )
    with pytest.raises(PendingFailures, match=r"canary: caption\.frame_captioner .* rerun once it answers"):
        run_build(cfg)
