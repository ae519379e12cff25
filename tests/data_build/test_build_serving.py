"""The build behind OpenAI-compatible servers (the fake one, on 127.0.0.1): a server that moves, or
serving settings that change, must not cost a finished shard or a cached stage output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.backends import BackendConfig, GenerationConfig, HTTPConfig
from action100m.backends.fake_server import FakeChatServer, echo
from action100m.config import CONFIG_DIR
from action100m.synth.generate import generate_dataset
from data_build.build import BuildConfig, run_build

FAST = ["segment.features=pixel", "samples_per_shard=2", "progress=false", "caption.mode=models",
        "caption.frames_per_segment=2", "caption.segment_frame_size=32", "caption.image_short_side=32",
        "refine.mode=llm", "refine.rounds=2", "sample_video.mode=none"]  # fmt: skip
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


def http(url: str, **settings) -> HTTPConfig:
    base = dict(base_url=url, max_retries=0, backoff_base_s=0.01, backoff_max_s=0.02, timeout_s=10)
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
        backend = BackendConfig(interface=interface, kind="openai", model=server.model, generation=generation,
                                http=http(server.base_url, **settings))  # fmt: skip
        setattr(cfg.caption, role, backend)
    cfg.refine.llm = BackendConfig(interface="llm", kind="openai", model=server.model, generation=generation,
                                   http=http(server.base_url, **settings))  # fmt: skip
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
    serving = ["segment.device=cuda", "segment.batch_windows=3", "segment.decode_chunk=17",
               "caption.batch_nodes=5", "caption.decode_chunk=9", "caption.max_pending_batches=1",
               "refine.in_flight=3", "batch_videos=1"]  # fmt: skip
    with FakeChatServer(reply=reply) as moved:
        cfg = served_config(manifest, out, moved, *serving, concurrency=3, timeout_s=77, max_retries=9,
                            backoff_base_s=0.5, api_key_env="ANOTHER_KEY_VARIABLE", transport="openai",
                            check_model=False)  # fmt: skip
        second = run_build(cfg)
        assert moved.requests_total == 0
    assert (second["built"], second["skipped"]) == (0, 2)
    assert stamps(out) == before

    # A shard that is not done yet (killed before its marker) is rebuilt from the caches alone.
    marker = next((out / "shards").glob("*.tar.done"))
    marker.unlink()
    with FakeChatServer(reply=reply) as moved:
        third = run_build(served_config(manifest, out, moved, *serving, concurrency=5))
        assert moved.requests_total == 0
    assert (third["built"], third["skipped"]) == (1, 1)


def test_stage_hashes_follow_what_a_stage_outputs_and_nothing_else(synth, tmp_path):
    from data_build.build import _stage_hashes

    def hashes(*overrides: str, **settings) -> dict[str, str]:
        with FakeChatServer() as server:
            cfg = served_config(synth / "manifest.jsonl", tmp_path, server, *overrides, **settings)
        cfg.caption.segment_captioner.http.base_url = "http://node17:8001/v1"  # not where it was
        return _stage_hashes(cfg, "input")

    base = hashes()
    assert hashes("segment.device=cuda", "caption.batch_nodes=1", concurrency=1, timeout_s=1) == base
    changed = {
        "segment.dtype=bfloat16": "segment", "segment.frame_step=3": "segment",
        "caption.frames_per_segment=4": "caption", "caption.frame_prompt=Say": "caption",
        "refine.rounds=3": "refine", "refine.keep_round_answers=hash": "refine",
    }  # fmt: skip
    for override, stage in changed.items():
        moved = {key for key, value in hashes(override).items() if value != base[key]}
        assert stage in moved and (stage != "refine" or moved == {"refine", "shards"}), override
    assert hashes(jpeg_quality=50)["caption"] != base["caption"]  # what the captioner sees
