import pytest

from action100m.video import open_video
from action100m.video.pattern import moving_square_frames
from action100m.video.writer import write_video


def test_written_video_decodes_with_the_promised_layout(tmp_path):
    path = write_video(tmp_path / "a.mp4", moving_square_frames(25, 32, 48), fps=12.5)
    info = open_video(path).info
    assert (info.num_frames, info.fps, info.width, info.height) == (25, 12.5, 48, 32)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "a.mp4"
    write_video(target, moving_square_frames(5), fps=10)
    before = target.read_bytes()

    def frames_then_crash():
        yield from moving_square_frames(3)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError, match="renderer died"):
        write_video(target, frames_then_crash(), fps=10)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "a.mp4", iter([]), fps=10)
    assert not list(tmp_path.iterdir())


def test_same_frames_same_bytes(tmp_path):
    frames = list(moving_square_frames(10))
    first = write_video(tmp_path / "a.mp4", frames, fps=10).read_bytes()
    second = write_video(tmp_path / "b.mp4", frames, fps=10).read_bytes()
    assert first == second
