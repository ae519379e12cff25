"""Valid but unusual uploads (modern and old codecs and containers, 10-bit, 4:4:4, odd sizes, variable
and extreme frame rates) build like any H.264 mp4: each is in a shard with its tree, and its record
names the backend that read it (decord, or PyAV where decord cannot)."""

import json
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from action100m.dataset.shards import read_tar
from action100m.synth.generate import generate_dataset
from action100m.video import open_video
from data_build.run import run_build
from tests.video.kinds import KINDS, write_kind

# decord's bundled FFmpeg has no AV1 decoder; everything else it reads itself
NEEDS_FALLBACK = {"av1_mp4"}
# long enough that at 1 fps segmentation still keeps several frames (the demo keeps every 2nd)
SECONDS = 8.0


def build_config(manifest: Path, out: Path, *overrides: str) -> Any:
    """The demo build with pixel features: the cheapest segmentation that reads every frame it keeps."""
    fixed = [
        f"input={manifest}",
        f"output={out}",
        "segment.features=pixel",
        f"samples_per_shard={len(KINDS)}",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("build", overrides=[*fixed, "progress=false", *overrides]))


@pytest.fixture(scope="module")
def unusual_videos(tmp_path_factory):
    """A manifest of every kind, each the same SynthActions video re-encoded, and the ground truth
    under each kind's video_uid, so the demo's ground-truth describer captions them all."""
    root = tmp_path_factory.mktemp("unusual")
    synth = root / "synth"
    generate_dataset(synth, videos=1, seed=3, size=64)
    [entry] = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    [truth] = [json.loads(line) for line in (synth / "ground_truth.jsonl").read_text().splitlines()]
    source = open_video(synth / entry["path"], "pyav")
    fps = source.info.fps
    frames = [frame.numpy() for frame in source.read_frames(range(round(SECONDS * fps)))]
    videos = root / "videos"
    videos.mkdir()
    manifest, truths = [], []
    for kind in KINDS:
        path = write_kind(videos, kind, frames, fps)
        manifest.append({"video_uid": kind.name, "path": f"videos/{path.name}", "metadata": {}})
        truths.append({**truth, "video_uid": kind.name})
    (root / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    (root / "ground_truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truths))
    return root / "manifest.jsonl"


def test_every_kind_builds_and_names_its_backend(unusual_videos, tmp_path):
    summary = run_build(build_config(unusual_videos, tmp_path / "out"))
    failures = (tmp_path / "out" / "failures.jsonl").read_text()
    assert summary["failures"] == 0, failures
    records = {
        key: json.loads(files["json"])
        for tar in sorted((tmp_path / "out" / "shards").glob("*.tar"))
        for key, files in read_tar(tar)
    }
    assert sorted(records) == sorted(kind.name for kind in KINDS)
    for name, record in records.items():
        assert len(record["nodes"]) >= 1, name
        assert record["metadata"]["duration"] == pytest.approx(SECONDS, abs=0.2), name  # the video read whole
        expected = "pyav" if name in NEEDS_FALLBACK else "decord"
        assert record["provenance"]["video"] == {"backend": expected}, name


def test_without_the_fallback_what_decord_cannot_read_is_an_input_failure(unusual_videos, tmp_path):
    summary = run_build(build_config(unusual_videos, tmp_path / "out", "video.fallback=false"))
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert summary["samples"] == len(KINDS) - len(NEEDS_FALLBACK)
    assert {(f["video_uid"], f["stage"]) for f in failures} == {(name, "input") for name in NEEDS_FALLBACK}
    assert all(
        f["reason"].endswith(
            "cannot open: Decoder not found (cannot find video stream with wanted index: -1)"
        )
        for f in failures
    )
