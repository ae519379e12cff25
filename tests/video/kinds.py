"""Valid but unusual videos, written with PyAV (no ffmpeg binary): the codecs, containers, pixel
formats, sizes and frame rates that real uploads come in, for the decoding and build tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest


@dataclass(frozen=True)
class Kind:
    name: str  # also the video's file stem and video_uid
    codec: str  # PyAV encoder
    container: str = "mp4"  # FFmpeg muxer
    suffix: str = "mp4"
    pix_fmt: str = "yuv420p"
    size: tuple[int, int] | None = None  # (height, width); None keeps the frames' own
    fps: float | None = None  # None keeps the frames' own
    vfr: bool = False  # frame durations alternate 1/2 and 3/2 of 1/fps: the same mean rate
    options: dict[str, str] = field(default_factory=dict)
    muxer_options: dict[str, str] = field(default_factory=dict)


# Fast encoder settings only: the content does not matter, the bitstream's features do.
X264 = {"preset": "ultrafast"}
X265 = {"preset": "ultrafast", "x265-params": "log-level=none"}
VPX = {"deadline": "realtime", "cpu-used": "8"}
KINDS = [
    Kind("av1_mp4", "libsvtav1", options={"preset": "12"}),
    Kind("vp9_webm", "libvpx-vp9", "webm", "webm", options=VPX),
    Kind("hevc_mp4", "libx265", options=X265),
    Kind("hevc_10bit", "libx265", pix_fmt="yuv420p10le", options=X265),
    Kind("h264_10bit", "libx264", pix_fmt="yuv420p10le", options=X264),
    Kind("h264_444", "libx264", pix_fmt="yuv444p", options=X264),
    Kind("odd_size_444", "libx264", pix_fmt="yuv444p", size=(17, 33), options=X264),  # 4:2:0 needs even sides
    Kind("odd_size_vp9", "libvpx-vp9", "webm", "webm", size=(17, 33), options=VPX),
    Kind("vfr", "libx264", vfr=True, options=X264),
    Kind("fps1", "libx264", fps=1, options=X264),
    Kind("fps120", "libx264", fps=120, options=X264),
    Kind("mpeg4_avi", "mpeg4", "avi", "avi"),
    Kind("mjpeg_avi", "mjpeg", "avi", "avi", pix_fmt="yuvj420p"),
    Kind("mpeg2_ts", "mpeg2video", "mpegts", "ts"),
    Kind("h264_mkv", "libx264", "matroska", "mkv", options=X264),
    Kind("prores_mov", "prores_ks", "mov", "mov", pix_fmt="yuv422p10le"),
]
KIND_NAMES = [kind.name for kind in KINDS]
BY_NAME = {kind.name: kind for kind in KINDS}


def frame_times(count: int, fps: float, vfr: bool) -> list[Fraction]:
    """Presentation times (seconds) of `count` frames at a mean rate of `fps`."""
    step = Fraction(fps).limit_denominator(1001) ** -1
    if not vfr:
        return [k * step for k in range(count)]
    return [k * step + (step / 2 if k % 2 else 0) for k in range(count)]


def write_kind(
    folder: Path, kind: Kind, frames: Sequence[np.ndarray], fps: float, seconds: float | None = None
) -> Path:
    """`frames` (RGB uint8 HWC at `fps`) written as `kind` into folder/<name>.<suffix>: resampled in time
    to the kind's frame rate (the frame shown at each output time), centre-cropped to its size.

    `seconds`: the length to write (default: the frames' own). Skips the test when this PyAV has no
    such encoder."""
    if kind.codec not in av.codecs_available:
        pytest.skip(f"{kind.name}: this PyAV has no {kind.codec} encoder")
    out_fps = kind.fps or fps
    count = max(2, round((seconds or len(frames) / fps) * out_fps))
    times = frame_times(count, out_fps, kind.vfr)
    height, width = kind.size or frames[0].shape[:2]
    top, left = (frames[0].shape[0] - height) // 2, (frames[0].shape[1] - width) // 2
    time_base = Fraction(1, 1000) if kind.vfr else Fraction(out_fps).limit_denominator(1001) ** -1
    path = folder / f"{kind.name}.{kind.suffix}"
    with av.open(str(path), "w", format=kind.container, options=dict(kind.muxer_options)) as container:
        stream = container.add_stream(kind.codec, rate=Fraction(out_fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, kind.pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base
        stream.codec_context.thread_count = 1  # the same frames give the same file
        stream.options = dict(kind.options)
        for t in times:
            source = frames[min(len(frames) - 1, int(t * fps))]
            rgb = np.ascontiguousarray(source[top : top + height, left : left + width])
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = int(t / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path) -> Path:
    """An mp4 with an AAC stream and no video stream: a container that opens and holds no frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
