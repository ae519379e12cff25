"""Shared fixtures: real H.264 test videos written with PyAV, the shared/ folder, tiny models."""

from __future__ import annotations

import faulthandler
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from action100m.tiny.models import train_word_tokenizer
from action100m.video.pattern import moving_square_frames
from action100m.video.writer import write_video

# pytest-timeout fails a test past its limit by a signal, which Python runs only between bytecodes: a test
# stuck inside native code (a decoder's futex, a collective) would never see it. This long after the
# limit faulthandler's own C thread prints every thread's stack and ends the run, so CI still stops.
BACKSTOP_S = 60
_real_stderr: int | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _real_stderr
    _real_stderr = os.dup(2)  # the terminal's stderr: while a test runs, fd 2 is pytest's capture file


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    """.ci/run sets A100M_TEST_DEADLINE (epoch seconds) well inside CI's limit: past it no test starts,
    and the session ends with its summary instead of being cut off mid-run."""
    deadline = os.environ.get("A100M_TEST_DEADLINE")
    if deadline and time.time() > float(deadline):
        pytest.exit(f"A100M_TEST_DEADLINE passed: stopped before {item.nodeid}", returncode=1)


def pytest_timeout_set_timer(item: pytest.Item, settings) -> None:
    if settings.timeout and _real_stderr is not None:
        faulthandler.dump_traceback_later(settings.timeout + BACKSTOP_S, exit=True, file=_real_stderr)
    # returns None: pytest-timeout's own timer is set as well


def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    faulthandler.cancel_dump_traceback_later()


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
