"""Clip preprocessing in plain torch (no torchvision transforms), on uint8 THWC frames from a source."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(
            f"expected uint8 frames of shape (T, H, W, C), got {frames.dtype} {tuple(frames.shape)}"
        )


def _unit_float(clip: torch.Tensor) -> torch.Tensor:
    return clip.float().div_(255.0) if clip.dtype == torch.uint8 else clip


def to_float_tchw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) → float32 (T, C, H, W) in [0, 1]."""
    _check_frames(frames)
    return _unit_float(frames.permute(0, 3, 1, 2))


def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (T, C, H, W), float or uint8, so that its shorter side is `size`, keeping the aspect ratio."""
    height, width = clip.shape[-2:]
    scale = size / min(height, width)
    new_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
    if new_hw == (height, width):
        return clip
    return F.interpolate(clip, size=new_hw, mode="bilinear", align_corners=False, antialias=True)


def center_crop(clip: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    crop_h, crop_w = (size, size) if isinstance(size, int) else size
    height, width = clip.shape[-2:]
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} larger than frame {height}x{width}")
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return clip[..., top : top + crop_h, left : left + crop_w]


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    std_t = torch.tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    return (clip - mean_t) / std_t


def short_side_for(crop_size: int) -> int:
    """The short side a clip is resized to before its centre crop: crop·256/224, as V-JEPA 2 evaluates."""
    return round(crop_size * 256 / 224)


def crop_clip(frames: torch.Tensor, crop_size: int, short_side: int | None = None) -> torch.Tensor:
    """uint8 THWC on the CPU → uint8 TCHW: the short side resized, centre-cropped to `crop_size`.

    The resize runs in uint8 before the crop, then only the crop becomes float: about 4x less work than
    resizing float frames, at most one grey level apart (benchmarks/train_throughput.py)."""
    _check_frames(frames)
    clip = resize_short_side(frames.permute(0, 3, 1, 2), short_side or short_side_for(crop_size))
    return center_crop(clip, crop_size)


def normalize_clip(
    clip: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 (or [0, 1] float) TCHW → normalised float TCHW."""
    return normalize(_unit_float(clip), mean, std)


def preprocess_clip(
    frames: torch.Tensor,
    crop_size: int,
    short_side: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 THWC → normalised float TCHW: resize the short side (default `short_side_for(crop_size)`),
    centre-crop to `crop_size`, normalise."""
    _check_frames(frames)
    if frames.device.type == "cpu":
        return normalize_clip(crop_clip(frames, crop_size, short_side), mean, std)
    # antialiased uint8 resizing is a CPU kernel
    clip = resize_short_side(_unit_float(frames.permute(0, 3, 1, 2)), short_side or short_side_for(crop_size))
    return normalize(center_crop(clip, crop_size), mean, std)
