"""The pipelined build (data_build/pipeline.py under Builder.build_shard): the stages run in threads of
their own on successive batches, yet the shard is the same bytes as one batch at a time; an error in
any stage stops the others and reaches the caller unchanged; retryable failures still leave the shard
undone; no thread or open video is left behind, on an error or on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from action100m.errors import Action100MError
from action100m.synth.generate import generate_dataset
from action100m.testing.fake_server import FakeChatServer
from action100m.video.source import _OPEN_SOURCES
from data_build.guard import FailureRateExceeded
from data_build.pipeline import run_stages
from data_build.run import Builder, PendingFailures, run_build
from tests.data_build.test_build import build_config
from tests.data_build.test_build_serving import reply, served_config

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10  # for what another thread does; far longer than it takes, short of the test's limit


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, videos=4, seed=7)
    return root


def stage_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("stage-")]


def open_videos(folder: Path) -> list[str]:
    """The videos under `folder` whose decoder is still open in this process."""
    return [str(s.path) for s in list(_OPEN_SOURCES) if s.path and Path(s.path).is_relative_to(folder)]


# -- run_stages on its own ----------------------------------------------------------------------


def test_the_stages_overlap_and_the_items_come_back_in_order():
    second_started = threading.Event()
    threads: dict[str, set[str]] = {"first": set(), "second": set()}

    def first(item: list) -> None:
        threads["first"].add(threading.current_thread().name)
        if item[0] == 1:
            second_started.set()
        item.append("first")

    def second(item: list) -> None:
        threads["second"].add(threading.current_thread().name)
        if item[0] == 0:  # only while the first stage works on item 1 in its own thread
            assert second_started.wait(WAIT_S), "the first stage did not go on to the next item"
        item.append("second")

    done = run_stages([[k] for k in range(5)], [first, second], 2, lambda item: None)
    assert done == [[k, "first", "second"] for k in range(5)]
    assert threads == {"first": {"stage-0"}, "second": {threading.current_thread().name}}
    assert stage_threads() == []


def test_in_flight_bounds_the_items_between_the_first_stage_and_the_end_of_the_last():
    open_items, most = set(), [0]

    def first(item: int) -> None:
        open_items.add(item)
        most[0] = max(most[0], len(open_items))

    def last(item: int) -> None:
        time.sleep(0.01)  # the first stage would run ahead without the bound
        open_items.discard(item)

    run_stages(range(30), [first, lambda item: None, last], 3, lambda item: None)
    assert most[0] == 3


def test_one_in_flight_runs_every_stage_in_the_calling_thread():
    names = []
    run_stages(range(3), [lambda i: names.append(threading.current_thread().name)] * 2, 1, lambda i: None)
    assert set(names) == {threading.current_thread().name}


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_an_error_in_any_stage_stops_the_others_and_is_raised_unchanged(failing):
    error = Action100MError("video synth-000003: the stage failed")
    begun, finished, discarded = [], [], []

    def stage(index: int):
        def run(item: int) -> None:
            begun.append(item) if index == 0 else None
            if index == failing and item == 3:
                raise error
            finished.append(item) if index == 2 else None

        return run

    with pytest.raises(Action100MError) as raised:
        run_stages(range(100), [stage(0), stage(1), stage(2)], 3, discarded.append)
    assert raised.value is error
    assert stage_threads() == []
    assert max(begun) <= 3 + 2  # the first stage stopped within the bound of items in flight
    assert sorted(finished + discarded) == begun  # every item begun is finished or discarded, once
    assert 3 in discarded


def test_ctrl_c_in_the_last_stage_stops_the_threads_without_waiting_for_their_items():
    release = threading.Event()
    discarded = []

    def slow(item: int) -> None:
        if item == 2:
            release.wait(WAIT_S)  # an item being worked on when Ctrl-C comes: not waited for

    def last(item: int) -> None:
        if item == 1:
            raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_stages(range(10), [lambda item: None, slow, last], 4, discarded.append)
    assert time.monotonic() - start < WAIT_S / 2
    release.set()
    for thread in stage_threads():
        thread.join(WAIT_S)
    assert stage_threads() == [] and 1 in discarded


# -- the build --------------------------------------------------------------------------------


def built_files(out: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(out)): path.read_bytes()
        for folder in ("shards", "failures")
        for path in sorted((out / folder).glob("*"))
    }


def test_the_pipelined_build_writes_the_bytes_of_one_batch_at_a_time(synth, tmp_path):
    manifest, files = synth / "manifest.jsonl", {}
    overrides = ["segment.features=vjepa2", "segment.model=tiny", "batch_videos=1", "samples_per_shard=4"]
    with FakeChatServer(reply=reply) as server:
        for in_flight in (1, 4):
            out = tmp_path / f"in-flight-{in_flight}"
            summary = run_build(
                served_config(manifest, out, server, *overrides, f"batches_in_flight={in_flight}")
            )
            assert (summary["built"], summary["failures"]) == (1, 0) and summary["annotated_nodes"] > 0
            files[in_flight] = built_files(out)
    assert files[1] == files[4]
    assert stage_threads() == [] and open_videos(synth) == []


def test_the_segmentation_model_is_loaded_once_per_worker_not_per_batch(synth, tmp_path, monkeypatch):
    """It was built for every batch: for V-JEPA 2 ViT-g, a checkpoint load per 8 videos."""
    import data_build.run

    built = []
    real = data_build.run.build_extractor
    monkeypatch.setattr(data_build.run, "build_extractor", lambda cfg: built.append(cfg) or real(cfg))
    overrides = ["segment.features=vjepa2", "segment.model=tiny", "batch_videos=1", "samples_per_shard=2"]
    with FakeChatServer(reply=reply) as server:
        summary = run_build(served_config(synth / "manifest.jsonl", tmp_path / "out", server, *overrides))
    assert summary["built"] == 2 and len(built) == 1  # 4 batches in 2 shards, one model


class StageFailed(Action100MError):
    pass


def test_an_error_in_the_caption_thread_stops_the_segmentation_and_reaches_the_caller(
    synth, tmp_path, monkeypatch
):
    caption, segmented = Builder.caption, []

    def failing_caption(self, pairs, failures):
        if len(segmented) > 1:
            raise StageFailed("caption.frame_captioner: the second batch failed")
        caption(self, pairs, failures)

    segment = Builder.segment
    monkeypatch.setattr(Builder, "caption", failing_caption)
    monkeypatch.setattr(Builder, "segment", lambda self, *a: segmented.append(1) or segment(self, *a))
    with FakeChatServer(reply=reply) as server:
        cfg = served_config(
            synth / "manifest.jsonl",
            tmp_path,
            server,
            "batch_videos=1",
            "samples_per_shard=4",
            "batches_in_flight=2",
        )
        with pytest.raises(StageFailed, match="^caption.frame_captioner: the second batch failed$"):
            run_build(cfg)
    assert len(segmented) <= 3  # the batch that failed, one more in flight, and one it could not start
    assert not list((tmp_path / "shards").glob("*.done"))
    assert stage_threads() == [] and open_videos(synth) == []


def test_the_failure_rate_guard_in_the_refine_thread_stops_the_build(synth, tmp_path):
    def refuse_refinement(index: int, messages: list[dict]) -> object:
        return 400 if messages[0].get("role") == "system" else "ok"  # the refine prompt opens so

    with FakeChatServer(reply=reply, script=refuse_refinement) as server:
        cfg = served_config(synth / "manifest.jsonl", tmp_path, server, "batch_videos=1", "canary=false")
        with pytest.raises(FailureRateExceeded, match="refine.llm"):
            run_build(cfg)
    assert not list((tmp_path / "shards").glob("*.done"))
    assert stage_threads() == [] and open_videos(synth) == []


def test_retryable_failures_leave_the_shard_undone_and_the_rerun_writes_the_clean_bytes(synth, tmp_path):
    manifest = synth / "manifest.jsonl"
    overrides = ["batch_videos=1", "samples_per_shard=4", "canary=false"]
    settings = {"breaker_failures": 0}  # every 5th request fails once, retryably, and stays failed

    def every_fifth(index: int, messages: list[dict]) -> object:
        return 503 if index % 5 == 4 else "ok"

    with FakeChatServer(reply=reply, script=every_fifth) as flaky:
        with pytest.raises(PendingFailures, match="retryable backend failures"):
            run_build(served_config(manifest, tmp_path / "out", flaky, *overrides, **settings))
    assert not list((tmp_path / "out" / "shards").glob("*.done"))
    with FakeChatServer(reply=reply) as healthy:
        rerun = run_build(served_config(manifest, tmp_path / "out", healthy, *overrides, **settings))
        clean = run_build(
            served_config(
                manifest, tmp_path / "clean", healthy, *overrides, "batches_in_flight=1", **settings
            )
        )
    assert (rerun["built"], rerun["failures"]) == (clean["built"], clean["failures"]) == (1, 0)
    assert built_files(tmp_path / "out") == built_files(tmp_path / "clean")
    assert stage_threads() == []


CHILD = """
import sys
from pathlib import Path
from types import SimpleNamespace
from data_build.run import run_build
from tests.data_build.test_build_serving import served_config
manifest, out, captions, llm = sys.argv[1:]
server = SimpleNamespace(base_url=captions, model="fake-model")
cfg = served_config(Path(manifest), Path(out), server, "batch_videos=1", "samples_per_shard=4", "canary=false")
cfg.refine.llm.http.base_url = llm
print("building", flush=True)
run_build(cfg)
"""


LLM_LATENCY_S = 8.0  # each refine request: a build waiting for its batch would take 2 rounds of it


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_ends_a_pipelined_build_at_once(synth, tmp_path):
    """A real SIGINT to a build whose refinement waits on a slow server while the other stages go on:
    it ends within seconds, with the KeyboardInterrupt, not once the batches being worked on are done."""
    with (
        FakeChatServer(reply=reply, latency_s=0.02) as captions,
        FakeChatServer(reply=reply, latency_s=LLM_LATENCY_S) as llm,
    ):
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(synth / "manifest.jsonl"),
                str(tmp_path),
                captions.base_url,
                llm.base_url,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "building"
            deadline = time.monotonic() + 60
            while llm.requests_total == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert llm.requests_total > 0, "the build never reached refinement"
            time.sleep(0.5)  # the next batches are being segmented and captioned meanwhile
            os.kill(child.pid, signal.SIGINT)
            interrupted = time.monotonic()
            _, stderr = child.communicate(timeout=30)
            seconds = time.monotonic() - interrupted
        finally:
            child.kill()
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr, stderr[-2000:]
    assert seconds < LLM_LATENCY_S - 2, "the build waited for the requests in flight"
    assert "Exception in thread" not in stderr, stderr[-2000:]


@pytest.mark.slow
def test_a_pipelined_build_with_local_models_writes_the_bytes_of_one_batch_at_a_time(synth, tmp_path):
    """build=tiny: the captioners and the LLM are torch models in this process, run from the stages'
    threads while the segmentation's thread builds its encoder (seeding torch's generator) batch by
    batch; without the canary, the backends are built by the pipeline before its threads start."""
    lines = (synth / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    two = [{**entry, "path": str(synth / entry["path"])} for entry in map(json.loads, lines)]
    manifest = tmp_path / "two.jsonl"
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in two), encoding="utf-8")
    files = {}
    for in_flight in (1, 4):
        out = tmp_path / f"in-flight-{in_flight}"
        overrides = ["build=tiny", "batch_videos=1", "refine.rounds=1", "canary=false"]
        cfg = build_config(manifest, out, *overrides, f"batches_in_flight={in_flight}")
        assert run_build(cfg)["failures"] == 0
        files[in_flight] = built_files(out)
    assert files[1] == files[4]
    assert stage_threads() == []
