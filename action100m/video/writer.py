"""H.264 encoding with PyAV (no ffmpeg binary needed), written atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from action100m.utils.atomic import atomic_path


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int = 18,
    codec: str = "libx264",
    gop: int | None = None,
    preset: str = "veryfast",
    threads: int = 0,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3; even H and W for yuv420p) to an mp4 at `path`.

    The file appears only when complete. `gop` caps the keyframe interval (default: one per 2 s).
    `threads`: encoder threads, 0 = FFmpeg's choice; x264's bytes depend on it, so pass a fixed count
    where the same frames must give the same file on every machine.
    """
    target = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with atomic_path(target) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = None
            for frame in frames:
                if stream is None:
                    height, width = frame.shape[:2]
                    stream = container.add_stream(codec, rate=rate)
                    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                    stream.codec_context.thread_count = threads
                    stream.options = {
                        "crf": str(crf),
                        "preset": preset,
                        "g": str(gop or max(1, round(2 * fps))),
                    }
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                container.mux(stream.encode(video_frame))
                count += 1
            if stream is None:
                raise ValueError(f"{target}: no frames to write")
            container.mux(stream.encode())
        finally:
            container.close()
    return target
