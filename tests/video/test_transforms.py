import pytest
import torch

from action100m.video.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop,
    normalize,
    preprocess_clip,
    resize_short_side,
    to_float_tchw,
)


def test_to_float_tchw_scales_and_permutes():
    frames = torch.zeros((2, 4, 6, 3), dtype=torch.uint8)
    frames[0, 1, 2] = torch.tensor([255, 0, 51], dtype=torch.uint8)
    clip = to_float_tchw(frames)
    assert clip.shape == (2, 3, 4, 6)
    assert clip[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(ValueError, match="expected uint8 frames"):
        to_float_tchw(clip)


def test_resize_short_side_keeps_aspect():
    assert resize_short_side(torch.rand(2, 3, 48, 64), 24).shape == (2, 3, 24, 32)
    assert resize_short_side(torch.rand(1, 3, 90, 30), 60).shape == (1, 3, 180, 60)


def test_center_crop_takes_the_middle():
    clip = torch.arange(36.0).view(1, 1, 6, 6)
    assert center_crop(clip, 2)[0, 0].tolist() == [[14.0, 15.0], [20.0, 21.0]]
    with pytest.raises(ValueError, match="larger than frame"):
        center_crop(clip, 7)


def test_normalize_per_channel():
    clip = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(normalize(clip, IMAGENET_MEAN, IMAGENET_STD), torch.zeros(1, 3, 2, 2))


def test_preprocess_clip_matches_the_steps_it_composes():
    frames = torch.randint(0, 256, (4, 48, 80, 3), dtype=torch.uint8)
    clip = preprocess_clip(frames, crop_size=32)
    assert clip.shape == (4, 3, 32, 32) and clip.dtype == torch.float32
    manual = normalize(
        center_crop(resize_short_side(to_float_tchw(frames), 37), 32), IMAGENET_MEAN, IMAGENET_STD
    )
    one_grey_level = 1 / 255 / min(IMAGENET_STD)  # the resize runs in uint8, the float path rounds nothing
    assert (clip - manual).abs().max() <= one_grey_level + 1e-5
    assert (clip - manual).abs().mean() < 0.4 * one_grey_level  # rounding: a quarter level on average
