"""Shared fixtures: real H.264 test videos written with PyAV, the shared/ folder, tiny models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from action100m.tiny.models import train_word_tokenizer
from action100m.video.pattern import moving_square_frames
from action100m.video.writer import write_video

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
TOKENIZER_CORPUS = [
    "hey guys welcome back today we rotate the blue square clockwise",
    "move the red circle to the left then grow the green triangle",
    "a person stirs the mixture in a bowl and speaks to the camera",
]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"no shared folder at {SHARED_DIR} (a user's clone has none)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def official_sample(shared_dir: Path) -> Path:
    path = shared_dir / "action100m_official" / "hySSAAw4t24.json"
    if not path.is_file():
        pytest.skip(f"official sample record missing: {path}")
    return path


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Write a moving-square H.264 mp4 with a known frame count, fps and size; returns its path."""

    def make(
        name: str = "clip.mp4",
        num_frames: int = 30,
        fps: float = 10,
        height: int = 48,
        width: int = 64,
        gop: int | None = None,
    ) -> Path:
        return write_video(tmp_path / name, moving_square_frames(num_frames, height, width), fps=fps, gop=gop)

    return make


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_word_tokenizer(TOKENIZER_CORPUS)


@pytest.fixture
def offline_wandb(monkeypatch):
    """W&B offline for this test, with the process-wide settings `wandb.setup()` caches torn down after
    it, so that no other test inherits them."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb.teardown()
    yield
    wandb.teardown()
