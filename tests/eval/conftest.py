"""Benchmark folders over the real annotation files, stand-in videos named as each benchmark names
them, a fake encoder that counts its calls, a tiny CLIP folder and a SynthActions benchmark."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from action100m.cli import main as cli_main
from action100m.eval.benchmarks import Source
from action100m.testing.tiny_clip import save_tiny_clip
from action100m.video.pattern import moving_square_frames
from action100m.video.transforms import preprocess_clip
from action100m.video.writer import write_video

SYNTH_CLIPS = 30


def stand_in(path: Path, num_frames: int = 20, fps: float = 10.0, height: int = 48, width: int = 64) -> Path:
    """A small H.264 video at `path` (an mp4 whatever the name: decoders read the container, not the
    extension), standing in for one of a benchmark's videos."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, moving_square_frames(num_frames, height, width), fps=fps)


@pytest.fixture
def real_root(shared_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A writable folder holding links to the shared annotation files of one benchmark."""

    def make(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        for file in (shared_dir / "benchmarks" / name).iterdir():
            (root / file.name).symlink_to(file)
        return root

    return make


def source(root: Path, **options: str) -> Source:
    return Source(root=root, videos=root, split=options.pop("split", ""), **options)


class FakeEncoder:
    """Deterministic embeddings without a model: a video is its mean colour, a text a hash-seeded
    vector. Counts the texts it embeds (the Y-encoder passes)."""

    name, num_frames, crop_size = "fake", 4, 16

    def __init__(self, dim: int = 3):
        self.dim, self.texts_embedded, self.text_calls = dim, 0, 0

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        return preprocess_clip(frames, self.crop_size)

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        return F.normalize(clips.mean(dim=(1, 3, 4))[:, : self.dim] + 1e-3, dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        self.text_calls += 1
        self.texts_embedded += len(texts)
        rows = [
            torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
            for t in texts
        ]
        return F.normalize(torch.stack(rows), dim=-1)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def synth_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT/benchmark of `action100m synth --videos 1 --seed 0 --benchmark-clips 30`."""
    out = tmp_path_factory.mktemp("synth") / "data"
    assert (
        cli_main(
            [
                "synth",
                "--out",
                str(out),
                "--videos",
                "1",
                "--seed",
                "0",
                "--benchmark-clips",
                str(SYNTH_CLIPS),
            ]
        )
        == 0
    )
    return out / "benchmark"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = [
        "rotate the blue square clockwise",
        "change the colour of the red circle to green",
        "a video of",
    ]
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), corpus)
