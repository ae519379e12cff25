"""Frame indices from times, computed in this one place for every stage (captions, training, eval).

Frame i is shown during [i / fps, (i + 1) / fps): time t maps to floor(t * fps), clamped to the video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Times computed as k / fps come back a hair below the integer after float rounding.
_EPS = 1e-6


def time_to_index(seconds: float, fps: float, num_frames: int) -> int:
    """The index of the frame shown at `seconds`."""
    index = math.floor(float(seconds) * fps + _EPS)
    return min(max(index, 0), num_frames - 1)


def times_to_indices(seconds: Sequence[float], fps: float, num_frames: int) -> list[int]:
    return [time_to_index(t, fps, num_frames) for t in seconds]


def uniform_times(start: float, end: float, count: int) -> list[float]:
    """`count` times at the centres of `count` equal bins of [start, end]."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    step = (end - start) / count
    return [start + (k + 0.5) * step for k in range(count)]


def uniform_indices(start: float, end: float, fps: float, num_frames: int, count: int) -> list[int]:
    """`count` frames uniformly spread over [start, end] (repeats when the span has fewer frames)."""
    return times_to_indices(uniform_times(start, end, count), fps, num_frames)


def mid_frame_index(start: float, end: float, fps: float, num_frames: int) -> int:
    return time_to_index((start + end) / 2.0, fps, num_frames)


def every_nth_index(num_frames: int, every: int) -> list[int]:
    """Indices 0, every, 2*every, ... below `num_frames` (segmentation keeps 1 of every 4 frames)."""
    if every <= 0:
        raise ValueError(f"every must be positive, got {every}")
    return list(range(0, num_frames, every))


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts of the windows over `num_frames` kept frames: every `stride`, plus one flush with the end
    so the tail is covered; a single (shorter) window when the video is shorter than one."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts
