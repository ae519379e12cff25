"""The `VideoSource` interface shared by the decoding backends, and its typed errors.

A source is cheap to create and to pickle: the decoder is opened lazily, in the process that first
reads, and reopened after a fork, so sources can be handed to DataLoader workers.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from action100m.errors import Action100MError
from action100m.video.sampling import times_to_indices


class VideoError(Action100MError):
    """A video that cannot be used; the message names the video and the reason."""

    def __init__(self, video: str, reason: str):
        self.video = video
        self.reason = reason
        super().__init__(f"{video}: {reason}")


class VideoNotFoundError(VideoError):
    """The path does not exist."""


def not_a_file(path: Path) -> str:
    """Why `path`, which is not a regular file, cannot be a video: the user's fix depends on which."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 says so for a loop
            return "a symlink loop"
        except OSError as err:
            return (
                "a symlink loop" if err.errno == errno.ELOOP else f"a broken symlink (to {os.readlink(path)})"
            )
    if path.is_dir():
        return "a directory, not a file"
    if path.exists():
        mode = path.stat().st_mode
        kind = "named pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        return f"not a regular file ({kind})"
    return "no such file"


class VideoDecodeError(VideoError):
    """The file exists but is not a decodable video (empty, truncated, not a video, audio only)."""


class FrameIndexError(VideoError):
    """A requested frame index or time lies outside the video."""


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` reports: enough to plan frame indices without decoding."""

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str


VideoInput = str | os.PathLike | bytes

# Sources holding an open decoder in this process. Decoders run threads (decord's prefetcher,
# FFmpeg's frame threads); a fork while one of them holds a lock leaves the child deadlocked at its
# first decode, so every decoder is closed just before a fork and reopened lazily on both sides.
_OPEN_SOURCES: weakref.WeakSet[VideoSource] = weakref.WeakSet()


def _close_open_decoders() -> None:
    for source in list(_OPEN_SOURCES):
        source.close()


os.register_at_fork(before=_close_open_decoders)


class VideoSource(ABC):
    """A video on disk or in memory, read as uint8 frames of shape (T, H, W, 3), RGB."""

    backend: str = ""

    def __init__(self, src: VideoInput, name: str | None = None):
        if isinstance(src, bytes | bytearray):
            self._path: str | None = None
            self._bytes: bytes | None = bytes(src)
            self.name = name or "<bytes>"
            if not self._bytes:
                raise VideoDecodeError(self.name, "empty input (0 bytes)")
        else:
            self._path = os.fspath(src)
            self._bytes = None
            self.name = name or self._path
            if not Path(self._path).is_file():
                raise VideoNotFoundError(self.name, not_a_file(Path(self._path)))
            if Path(self._path).stat().st_size == 0:
                raise VideoDecodeError(self.name, "empty file (0 bytes)")
        self._info: VideoInfo | None = None
        self._decoder: Any = None
        self._decoder_pid: int | None = None

    # -- what callers use -------------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The file read, or None for a video given as bytes."""
        return self._path

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            info = self._probe()
            if info.num_frames <= 0 or info.fps <= 0 or not np.isfinite(info.fps):
                raise VideoDecodeError(
                    self.name, f"no decodable frames (frames={info.num_frames}, fps={info.fps})"
                )
            self._info = info
        return self._info

    def read_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at `indices` (any order, repeats allowed), each decoded once, as uint8 THWC."""
        wanted = [int(i) for i in indices]
        if not wanted:
            info = self.info
            return torch.empty((0, info.height, info.width, 3), dtype=torch.uint8)
        n = self.info.num_frames
        bad = [i for i in wanted if i < 0 or i >= n]
        if bad:
            raise FrameIndexError(self.name, f"frame index {bad[0]} outside [0, {n - 1}]")
        unique = sorted(set(wanted))
        decoded = self._decode_sorted(unique)
        if decoded.shape[0] != len(unique):
            raise VideoDecodeError(
                self.name, f"decoded {decoded.shape[0]} of {len(unique)} requested frames (truncated file?)"
            )
        position = {frame: k for k, frame in enumerate(unique)}
        order = torch.tensor([position[i] for i in wanted], dtype=torch.long)
        return torch.from_numpy(decoded).index_select(0, order)

    def iter_frames(self, indices: Sequence[int], chunk: int = 64) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, uint8 HWC frame) for each of the sorted unique `indices`: one pass front to back,
        decoded `chunk` frames at a time so memory stays bounded on long videos."""
        unique = sorted({int(i) for i in indices})
        for first in range(0, len(unique), chunk):
            part = unique[first : first + chunk]
            yield from zip(part, self.read_frames(part), strict=True)

    def read_times(self, seconds: Sequence[float]) -> torch.Tensor:
        """Frames shown at the given times (seconds from the start), as uint8 THWC."""
        info = self.info
        for t in seconds:
            if not 0.0 <= float(t) <= info.duration + 1.0 / info.fps:
                raise FrameIndexError(self.name, f"time {float(t):.3f}s outside [0, {info.duration:.3f}]")
        return self.read_frames(times_to_indices(seconds, info.fps, info.num_frames))

    def close(self) -> None:
        if self._decoder is not None:
            self._close_decoder(self._decoder)
        self._decoder = None
        self._decoder_pid = None
        _OPEN_SOURCES.discard(self)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoder"] = None
        state["_decoder_pid"] = None
        return state

    # -- for backends -----------------------------------------------------------------------------

    def _open_input(self) -> str | io.BytesIO:
        return self._path if self._path is not None else io.BytesIO(self._bytes or b"")

    def _get_decoder(self) -> Any:
        """The backend's decoder, created in this process on first use (never shared across a fork)."""
        if self._decoder is None or self._decoder_pid != os.getpid():
            self._decoder = self._open_decoder()
            self._decoder_pid = os.getpid()
            _OPEN_SOURCES.add(self)
        return self._decoder

    @abstractmethod
    def _open_decoder(self) -> Any: ...

    def _close_decoder(self, decoder: Any) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    def _probe(self) -> VideoInfo: ...

    @abstractmethod
    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        """Frames at strictly increasing `indices`, as one uint8 array (N, H, W, 3)."""
