"""Re-encoding a video for training: smaller short side, lower frame rate, H.264 at a given CRF."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from action100m.video.source import VideoSource
from action100m.video.transforms import to_float_tchw
from action100m.video.writer import write_video


def reencode(
    video: VideoSource, short_side: int | None = 256, fps: float | None = None, crf: int = 23, chunk: int = 64
) -> bytes:
    """The video as mp4 bytes: short side at most `short_side` (even sides), at most `fps` frames per
    second (frames dropped uniformly), one pass over the source with bounded memory."""
    info = video.info
    out_fps = min(fps, info.fps) if fps else info.fps
    count = max(1, round(info.num_frames * out_fps / info.fps))
    indices = [min(info.num_frames - 1, int(k * info.fps / out_fps)) for k in range(count)]
    scale = min(1.0, short_side / min(info.height, info.width)) if short_side else 1.0
    height, width = (max(2, 2 * round(info.height * scale / 2)), max(2, 2 * round(info.width * scale / 2)))

    def frames() -> Iterator[np.ndarray]:
        by_index = dict.fromkeys(indices, 0)
        for index in indices:
            by_index[index] += 1
        for index, frame in video.iter_frames(indices, chunk=chunk):
            if (height, width) != tuple(frame.shape[:2]):
                resized = torch.nn.functional.interpolate(
                    to_float_tchw(frame[None]), size=(height, width), mode="bilinear", antialias=True
                )
                frame = resized[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).to(torch.uint8)
            for _ in range(by_index[index]):
                yield frame.numpy()

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "reencoded.mp4", frames(), fps=out_fps, crf=crf, threads=1)
        return path.read_bytes()
