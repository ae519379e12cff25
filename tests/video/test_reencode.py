import pytest

from action100m.video import open_video
from action100m.video.reencode import reencode


def test_reencode_shrinks_and_drops_frames(make_video):
    path = make_video(num_frames=40, fps=20, height=96, width=128)
    data = reencode(open_video(path), short_side=48, fps=10, crf=23)
    info = open_video(data, name="re").info
    assert (info.height, info.width, info.fps, info.num_frames) == (48, 64, 10.0, 20)
    assert info.duration == pytest.approx(2.0)


def test_reencode_never_upscales_and_is_deterministic(make_video):
    path = make_video(num_frames=10, fps=10, height=48, width=64)
    first = reencode(open_video(path), short_side=256)
    assert first == reencode(open_video(path), short_side=256)
    info = open_video(first, name="re").info
    assert (info.height, info.width, info.num_frames) == (48, 64, 10)
