"""A deterministic moving-square test pattern: every frame differs from its neighbours, and frame i
encodes i in its background, so decoders can be checked frame by frame."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def moving_square_frames(
    num_frames: int, height: int = 48, width: int = 64, square: int = 8
) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3): a white square sliding right and down over a background whose
    green channel steps with the frame index."""
    span_x, span_y = max(1, width - square), max(1, height - square)
    for i in range(num_frames):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[..., 1] = (i * 7) % 256
        frame[..., 2] = 64
        x, y = (i * 3) % span_x, (i * 2) % span_y
        frame[y : y + square, x : x + square] = 255
        yield frame
