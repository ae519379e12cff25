"""The build behind OpenAI-compatible servers (the fake one, on 127.0.0.1): a server that moves, or
serving settings that change, must not cost a finished shard or a cached stage output."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.backends import BackendConfig, GenerationConfig, HTTPConfig
from action100m.config import CONFIG_DIR
from action100m.dataset.shards import read_tar
from action100m.synth.generate import generate_dataset
from action100m.testing.fake_server import FakeChatServer, echo
from action100m.utils.atomic import write_text_atomic
from data_build.config import BuildConfig
from data_build.run import PendingFailures, run_build

# Before the first shard it builds, a run asks each backend once (data_build/canary.py): a frame
# caption, a segment caption, an action label and one refine request.
CANARY_REQUESTS = 4
FAST = [
    "segment.features=pixel",
    "samples_per_shard=2",
    "progress=false",
    "caption.mode=models",
    "caption.frames_per_segment=2",
    "caption.segment_frame_size=32",
    "caption.image_short_side=32",
    "refine.mode=llm",
    "refine.rounds=2",
    "sample_video.mode=none",
]
ANSWER = {
    "summary": {"brief": "A person works at a table.", "detailed": "A person works at a table with tools."},
    "action": {
        "brief": "assemble a part",
        "detailed": "Assemble a part with both hands.",
        "actor": "a person",
    },
}


def reply(messages: list[dict], response_format: dict | None = None) -> str:
    """Captions echo their prompt; refinement (the only caller sending a schema) gets a valid answer."""
    return echo(messages) if response_format is None else json.dumps(ANSWER)


def http(url: str, key: str, **settings) -> HTTPConfig:
    base = dict(base_url=url, max_retries=0, backoff_base_s=0.01, backoff_max_s=0.02, timeout_s=10)
    if settings.get("servers_file"):
        base["servers_key"] = key
    return HTTPConfig(**{**base, **settings})


def served_config(
    manifest: Path, out: Path, server: FakeChatServer, *overrides: str, **settings
) -> BuildConfig:
    """A build whose three backends are `server`, with `settings` for their HTTP configs."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("build", overrides=[f"input={manifest}", f"output={out}", *FAST, *overrides])
    cfg = OmegaConf.to_object(cfg)
    generation = GenerationConfig(max_new_tokens=32)
    for role, interface in (("frame_captioner", "image_captioner"), ("segment_captioner", "video_captioner")):
        backend = BackendConfig(
            interface=interface,
            kind="openai",
            model=server.model,
            generation=generation,
            http=http(server.base_url, f"{role.upper()}_URL", **settings),
        )
        setattr(cfg.caption, role, backend)
    cfg.refine.llm = BackendConfig(
        interface="llm",
        kind="openai",
        model=server.model,
        generation=generation,
        http=http(server.base_url, "LLM_URL", **settings),
    )
    return cfg


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, videos=4, seed=7)
    return root


def stamps(out: Path) -> dict[str, int]:
    """Every cache and shard file with its modification time: what a rerun must leave as it is."""
    files = [*(out / "work").rglob("*.json"), *(out / "shards").glob("*")]
    return {str(path.relative_to(out)): path.stat().st_mtime_ns for path in files}


def test_a_moved_server_and_new_serving_settings_continue_the_build(synth, tmp_path):
    manifest, out = synth / "manifest.jsonl", tmp_path / "out"
    with FakeChatServer(reply=reply) as server:
        first = run_build(served_config(manifest, out, server))
        assert server.requests_total > 0
    assert (first["built"], first["failures"]) == (2, 0)
    before = stamps(out)
    assert any("/caption-" in name for name in before) and any("/refine/" in name for name in before)

    # The server job came back on another node (another port here), with other serving settings.
    serving = [
        "segment.device=cuda",
        "segment.batch_windows=3",
        "segment.decode_chunk=17",
        "caption.batch_nodes=5",
        "caption.decode_chunk=9",
        "caption.max_pending_batches=1",
        "refine.in_flight=3",
        "batch_videos=1",
    ]
    with FakeChatServer(reply=reply) as moved:
        cfg = served_config(
            manifest,
            out,
            moved,
            *serving,
            concurrency=3,
            timeout_s=77,
            max_retries=9,
            backoff_base_s=0.5,
            api_key_env="ANOTHER_KEY_VARIABLE",
            transport="openai",
            check_model=False,
        )
        second = run_build(cfg)
        assert moved.requests_total == 0
    assert (second["built"], second["skipped"]) == (0, 2)
    assert stamps(out) == before

    # A shard that is not done yet (killed before its marker) is rebuilt from the caches alone.
    marker = next((out / "shards").glob("*.tar.done"))
    marker.unlink()
    with FakeChatServer(reply=reply) as moved:
        third = run_build(served_config(manifest, out, moved, *serving, concurrency=5))
        assert moved.requests_total == CANARY_REQUESTS  # the canary's, before the shard: none for it
    assert (third["built"], third["skipped"]) == (1, 1)


def test_stage_hashes_follow_what_a_stage_outputs_and_nothing_else(synth, tmp_path):
    from data_build.cache import stage_hashes

    def hashes(*overrides: str, **settings) -> dict[str, str]:
        with FakeChatServer() as server:
            cfg = served_config(synth / "manifest.jsonl", tmp_path, server, *overrides, **settings)
        cfg.caption.segment_captioner.http.base_url = "http://node17:8001/v1"  # not where it was
        return stage_hashes(cfg, "input")

    base = hashes()
    assert hashes("segment.device=cuda", "caption.batch_nodes=1", concurrency=1, timeout_s=1) == base
    changed = {
        "segment.dtype=bfloat16": "segment",
        "segment.frame_step=3": "segment",
        "caption.frames_per_segment=4": "caption",
        "caption.frame_prompt=Say": "caption",
        "refine.rounds=3": "refine",
        "refine.keep_round_answers=hash": "refine",
    }
    for override, stage in changed.items():
        moved = {key for key, value in hashes(override).items() if value != base[key]}
        assert stage in moved and (stage != "refine" or moved == {"refine", "shards"}), override
    assert hashes(jpeg_quality=50)["caption"] != base["caption"]  # what the captioner sees


def pending_work(out: Path) -> tuple[int, int]:
    """(caption requests that failed retryably, refine nodes left unfinished) in the caches."""
    captions = [json.loads(p.read_text()) for p in (out / "work" / "videos").glob("*/caption-*.json")]
    failed = sum(f.get("retryable", False) for c in captions for f in c["failures"])
    states = [
        json.loads(p.read_text())["state"] for p in (out / "work").glob("refine-inputs/*/refine/*/*/*.json")
    ]
    return failed, sum(not state["final"] for state in states)


def test_an_outage_leaves_its_shard_undone_and_the_rerun_asks_only_for_what_failed(synth, tmp_path):
    manifest, out, servers = synth / "manifest.jsonl", tmp_path / "out", tmp_path / "servers.env"
    stopping: list[threading.Thread] = []

    def outage_after(count: int):
        def script(index: int, messages: list[dict]) -> object:
            if index == count:  # the server job ends mid-build: 503s, then nothing listens
                stopping.append(threading.Thread(target=down.stop))
                stopping[0].start()
            return "ok" if index < count else 503

        return script

    def point_servers_file_at(server: FakeChatServer) -> None:
        lines = [f"{key}_URL={server.base_url}\n" for key in ("FRAME_CAPTIONER", "SEGMENT_CAPTIONER", "LLM")]
        write_text_atomic(servers, "".join(lines))

    settings = dict(
        servers_file=str(servers),
        max_retries=1,
        breaker_failures=3,
        breaker_wait_s=1.0,
        breaker_backoff_max_s=0.2,
    )
    down = FakeChatServer(reply=reply, script=outage_after(450)).start()
    point_servers_file_at(down)
    with pytest.raises(PendingFailures) as raised:
        run_build(served_config(manifest, out, down, **settings))
    for thread in stopping:
        thread.join()
    message = str(raised.value)
    failed, unfinished = pending_work(out)
    assert failed > 0 and unfinished > 0
    assert (
        f"{failed + unfinished} retryable backend failures (server {down.base_url}: {failed + unfinished})"
        in message
    )
    assert "in 1 shard(s)" in message and f"server {down.base_url} down" in message
    markers = sorted((out / "shards").glob("*.tar.done"))
    assert len(markers) == 1  # the shard built before the outage is done, the other is not

    with FakeChatServer(reply=reply) as back:  # the server job came back on another node
        point_servers_file_at(back)
        summary = run_build(served_config(manifest, out, down, **settings))  # base_url: the old address
        # The canary's, each failed caption request once, each unfinished node's two rounds: nothing else.
        assert back.requests_total == CANARY_REQUESTS + failed + 2 * unfinished
    assert (summary["built"], summary["skipped"], summary["failures"]) == (1, 1, 0)
    assert pending_work(out) == (0, 0)
    records = [
        json.loads(files["json"]) for tar in (out / "shards").glob("*.tar") for _, files in read_tar(tar)
    ]
    nodes = [node for record in records for node in record["nodes"]]
    assert all(node["segment_caption"] and node["action_label"] for node in nodes)
