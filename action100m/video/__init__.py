"""Video decoding (decord by default, PyAV), probing, frame-index sampling, transforms and writing."""

from __future__ import annotations

from typing import Any

from action100m.video.decord_backend import DecordSource
from action100m.video.pyav_backend import PyAVSource, probe
from action100m.video.source import (
    FrameIndexError,
    VideoDecodeError,
    VideoError,
    VideoInfo,
    VideoInput,
    VideoNotFoundError,
    VideoSource,
)

BACKENDS: dict[str, type[VideoSource]] = {"decord": DecordSource, "pyav": PyAVSource}


def open_video(
    src: VideoInput, backend: str = "decord", name: str | None = None, **options: Any
) -> VideoSource:
    """A lazily-opened `VideoSource` for a path or bytes, read with `backend` ("decord" or "pyav")."""
    try:
        source_class = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {sorted(BACKENDS)}") from None
    return source_class(src, name=name, **options)


__all__ = [
    "BACKENDS",
    "DecordSource",
    "FrameIndexError",
    "PyAVSource",
    "VideoDecodeError",
    "VideoError",
    "VideoInfo",
    "VideoNotFoundError",
    "VideoSource",
    "open_video",
    "probe",
]
