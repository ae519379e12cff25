"""Video decoding (decord by default, PyAV, torchcodec), probing, frame sampling, transforms, writing.

A backend's decoder library is imported when that backend is first used, not with this package: code
that only needs the sources' types and errors (the models, the segmenter's encoder) runs where no
decoder is installed, as on a lent GPU machine (README: The GPU measurement).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from action100m.video.source import (
    FrameIndexError,
    VideoDecodeError,
    VideoError,
    VideoInfo,
    VideoInput,
    VideoNotFoundError,
    VideoSource,
)

# Each backend's module and class. Order is the fallback order after the configured backend. torchcodec
# comes last: it links the system FFmpeg, so on a video that both decord's and PyAV's FFmpeg refuse it
# is a third, independent try.
BACKENDS: dict[str, tuple[str, str]] = {
    "decord": ("action100m.video.decord_backend", "DecordSource"),
    "pyav": ("action100m.video.pyav_backend", "PyAVSource"),
    "torchcodec": ("action100m.video.torchcodec_backend", "TorchCodecSource"),
}
# Names this package gives from a backend's module, imported on first use (PEP 562).
_LAZY = {
    **{cls: module for module, cls in BACKENDS.values()},
    "probe": "action100m.video.pyav_backend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_class(backend: str) -> type[VideoSource]:
    """The `VideoSource` class of `backend`, its decoder library imported now."""
    try:
        module, cls = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {sorted(BACKENDS)}") from None
    return getattr(importlib.import_module(module), cls)


def open_video(
    src: VideoInput, backend: str = "decord", name: str | None = None, **options: Any
) -> VideoSource:
    """A lazily-opened `VideoSource` for a path or bytes, read with `backend` ("decord", "pyav" or
    "torchcodec")."""
    return backend_class(backend)(src, name=name, **options)


def backend_chain(backend: str, fallback: bool = True) -> list[str]:
    """The backends `open_readable` tries, in order: `backend`, then (with `fallback`) the others in
    `BACKENDS` order."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {sorted(BACKENDS)}")
    return [backend, *(other for other in BACKENDS if other != backend)] if fallback else [backend]


def _options_taken(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    # A fallback gets the options its constructor takes (decord has no seek_threshold); the configured
    # backend gets all of them, so a mistyped option still fails there as it does in open_video.
    taken = inspect.signature(backend_class(backend).__init__).parameters
    return {key: value for key, value in options.items() if key in taken}


def open_readable(
    src: VideoInput, backend: str = "decord", name: str | None = None, fallback: bool = True, **options: Any
) -> VideoSource:
    """A probed `VideoSource` read by the first backend of `backend_chain(backend, fallback)` that can.

    With `fallback`, a backend must also decode the first and the last frame: headers that parse say
    nothing of whether the frames decode (decord's FFmpeg has no AV1 decoder; a file cut short keeps
    its header), and a failure found mid-build could no longer change backend. Without it only the
    probe is checked, as `open_video(...).info` does. A video no backend reads raises one
    `VideoDecodeError` naming each backend's reason; a missing or empty file raises at once, as it is
    the same for every backend.
    """
    chain = backend_chain(backend, fallback)
    backends_by_reason: dict[str, list[str]] = {}
    for candidate in chain:
        source = open_video(
            src, candidate, name, **(options if candidate == backend else _options_taken(candidate, options))
        )
        try:
            info = source.info
            if fallback:
                source.read_frames(sorted({0, info.num_frames - 1}))
            return source
        except VideoDecodeError as err:
            source.close()
            if len(chain) == 1:
                raise
            backends_by_reason.setdefault(err.reason, []).append(candidate)
    # decord reads the headers with PyAV, so both often fail alike: each reason is said once
    reasons = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in backends_by_reason.items())
    raise VideoDecodeError(source.name, f"no backend can read it ({reasons})")


__all__ = [
    "BACKENDS",
    "DecordSource",
    "FrameIndexError",
    "PyAVSource",
    "TorchCodecSource",
    "VideoDecodeError",
    "VideoError",
    "VideoInfo",
    "VideoNotFoundError",
    "VideoSource",
    "backend_chain",
    "backend_class",
    "open_readable",
    "open_video",
    "probe",
]
