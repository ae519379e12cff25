"""Clips decoded and preprocessed in DataLoader workers: T frames per temporal view, one or three crops.

A clip that cannot be read comes back as its failure reason, never as another clip: the caller counts
it and decides (the run fails unless allow_missing=true).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from action100m.eval.benchmarks import Clip
from action100m.video import FrameIndexError, VideoError, open_video
from action100m.video.sampling import uniform_indices

SAMPLING = "uniform: T frames at the centres of T equal bins of each view's span"


def view_spans(start: float, end: float, views: int) -> list[tuple[float, float]]:
    """`views` equal consecutive parts of [start, end] (one view: the whole span)."""
    step = (end - start) / views
    return [(start + k * step, start + (k + 1) * step) for k in range(views)]


def square_crops(frames: torch.Tensor, crops: int) -> list[torch.Tensor]:
    """1: the frames as they are (the encoder centre-crops); 3: the short-side squares at the start,
    centre and end of the long side (uint8 THWC)."""
    if crops == 1:
        return [frames]
    height, width = frames.shape[1:3]
    side, long = min(height, width), max(height, width)
    offsets = (0, (long - side) // 2, long - side)
    if height >= width:
        return [frames[:, o : o + side] for o in offsets]
    return [frames[:, :, o : o + side] for o in offsets]


@dataclass
class Sample:
    index: int
    views: torch.Tensor | None  # (views * crops, T, 3, crop, crop)
    error: str | None


class ClipDataset(Dataset):
    """Clip i -> Sample(i, preprocessed views, None) or Sample(i, None, reason)."""

    def __init__(
        self,
        clips: Sequence[Clip],
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        num_frames: int,
        temporal_views: int = 1,
        spatial_crops: int = 1,
        backend: str = "decord",
        video_options: dict[str, Any] | None = None,
    ):
        if spatial_crops not in (1, 3):
            raise ValueError(f"spatial_crops must be 1 or 3, got {spatial_crops}")
        if num_frames < 1 or temporal_views < 1:
            raise ValueError(
                f"num_frames and temporal_views must be positive, got {num_frames}, {temporal_views}"
            )
        self.clips, self.preprocess = list(clips), preprocess
        self.num_frames, self.temporal_views, self.spatial_crops = num_frames, temporal_views, spatial_crops
        self.backend, self.video_options = backend, dict(video_options or {})

    def __len__(self) -> int:
        return len(self.clips)

    def frames(self, clip: Clip) -> torch.Tensor:
        """uint8 (views * T, H, W, 3): every view's frames, decoded in one pass."""
        with open_video(clip.video, self.backend, name=str(clip.video), **self.video_options) as source:
            info = source.info
            end = info.duration if clip.end is None else min(clip.end, info.duration)
            if clip.start >= info.duration or end <= clip.start:
                raise FrameIndexError(
                    str(clip.video),
                    f"span [{clip.start:.3f}, {clip.end}] s outside the video ({info.duration:.3f} s)",
                )
            indices = [
                i
                for start, stop in view_spans(clip.start, end, self.temporal_views)
                for i in uniform_indices(start, stop, info.fps, info.num_frames, self.num_frames)
            ]
            return source.read_frames(indices)

    def __getitem__(self, index: int) -> Sample:
        try:
            frames = self.frames(self.clips[index])
        except VideoError as err:
            return Sample(index, None, err.reason)
        views = [
            self.preprocess(crop)
            for part in frames.split(self.num_frames)
            for crop in square_crops(part, self.spatial_crops)
        ]
        return Sample(index, torch.stack(views), None)


def collate(samples: list[Sample]) -> list[Sample]:
    """Keep samples apart: failures carry no tensor, and the model stacks what it gets."""
    return samples
