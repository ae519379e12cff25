import dataclasses

import pytest
import torch

from action100m.video import (
    VideoDecodeError,
    VideoNotFoundError,
    backend_chain,
    open_readable,
    open_video,
)
from action100m.video.decord_backend import decord_reason
from action100m.video.pattern import moving_square_frames
from tests.video.kinds import BY_NAME, KIND_NAMES, write_kind

# The one kind decord here refuses: its bundled FFmpeg was built without an AV1 decoder.
NEEDS_FALLBACK = {"av1_mp4"}
# What decord's C++ checks leave in an error: none of it may reach a reason.
CPP_NOISE = ("Check failed", ".cc:", "Stack trace", "[bt]", "/github/")


@pytest.fixture
def make_kind(tmp_path):
    frames = list(moving_square_frames(20, 48, 64))

    def make(kind):
        return write_kind(tmp_path, BY_NAME[kind] if isinstance(kind, str) else kind, frames, fps=10)

    return make


def assert_one_readable_line(message: str) -> None:
    assert "\n" not in message and not any(noise in message for noise in CPP_NOISE), message


def test_the_chain_starts_with_the_configured_backend():
    assert backend_chain("decord") == ["decord", "pyav", "torchcodec"]
    assert backend_chain("pyav") == ["pyav", "decord", "torchcodec"]
    assert backend_chain("torchcodec") == ["torchcodec", "decord", "pyav"]
    assert backend_chain("decord", fallback=False) == ["decord"]
    with pytest.raises(ValueError, match="unknown video backend 'ffmpeg'"):
        backend_chain("ffmpeg")


def test_decord_cannot_open_av1_and_the_fallback_reads_it(make_kind):
    path = make_kind("av1_mp4")
    with pytest.raises(VideoDecodeError, match=r"av1_mp4\.mp4: cannot open: Decoder not found") as refused:
        _ = open_video(path, "decord").info
    assert_one_readable_line(str(refused.value))
    source = open_readable(path, "decord", name="av1")
    assert source.backend == "pyav" and source.info.num_frames == 20
    assert torch.equal(source.read_frames([0, 7, 19]), open_video(path, "pyav").read_frames([0, 7, 19]))


def test_a_readable_video_keeps_the_configured_backend(make_video):
    path = make_video()
    assert open_readable(path, "decord").backend == "decord"
    assert open_readable(path, "pyav").backend == "pyav"


def test_fallback_false_keeps_the_old_behaviour(make_kind):
    path = make_kind("av1_mp4")
    with pytest.raises(VideoDecodeError) as alone:
        open_readable(path, "decord", fallback=False)
    with pytest.raises(VideoDecodeError) as before:
        _ = open_video(path, "decord").info
    assert str(alone.value) == str(before.value)


def test_a_video_no_backend_reads_is_one_line_naming_each_backend(make_kind):
    # AV1 with its header in front, cut in half: PyAV reads the header and fails on the frames,
    # decord fails in a C++ check before any frame
    kind = dataclasses.replace(BY_NAME["av1_mp4"], name="cut", muxer_options={"movflags": "faststart"})
    path = make_kind(kind)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VideoDecodeError) as failed:
        open_readable(path, "decord", name="cut-video")
    message = str(failed.value)
    assert message.startswith("cut-video: no backend can read it (decord: cannot open: Decoder not found")
    assert "; pyav: decode failed" in message
    assert_one_readable_line(message)


def test_backends_failing_alike_are_named_together(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 50)
    with pytest.raises(VideoDecodeError, match=r"notes: no backend can read it \(decord, pyav: cannot open"):
        open_readable(path, name="notes")


def test_a_missing_file_is_not_tried_on_every_backend(tmp_path):
    with pytest.raises(VideoNotFoundError, match=r"nope\.mp4: no such file$"):
        open_readable(tmp_path / "nope.mp4")


def test_a_fallback_gets_only_the_options_it_takes(make_kind):
    source = open_readable(make_kind("av1_mp4"), "decord", num_threads=1)
    assert (source.backend, source.num_threads) == ("pyav", 1)
    with pytest.raises(TypeError, match="seek_threshold"):  # the configured backend is told, as by open_video
        open_readable(make_kind("av1_mp4"), "decord", seek_threshold=10)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "[12:00:00] /github/workspace/src/video/video_reader.cc:151: Check failed: st_nb >= 0 "
            "(-1128613112 vs. 0) ERROR cannot find video stream with wanted index: -1\n\nStack trace:\n"
            "  [bt] (0) /usr/lib/libdecord.so(+0x1234) [0x7f]\n",
            "Decoder not found (cannot find video stream with wanted index: -1)",
        ),
        (
            "[23:59:59] /github/workspace/src/video/video_reader.cc:70: Check failed: ret >= 0 "
            "(-1094995529 vs. 0) : Unable to open file.",
            "Invalid data found when processing input (Unable to open file.)",
        ),
        (
            "[01:02:03] /src/a.cc:9: Check failed: ctx != nullptr : ERROR failed to allocate",
            "failed to allocate",
        ),
        ("[01:02:03] /src/a.cc:9: Check failed: pos >= 0 (-1 vs. 0)", "check failed: pos >= 0"),
        ("Error reading frame 12", "Error reading frame 12"),
    ],
)
def test_decord_errors_become_one_readable_line(message, reason):
    assert decord_reason(RuntimeError(message)) == reason


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_kind_is_read_whole(make_kind, kind):
    source = open_readable(make_kind(kind), "decord")
    assert source.backend == ("pyav" if kind in NEEDS_FALLBACK else "decord")
    info = source.info
    frames = source.read_frames(list(range(info.num_frames)))
    assert tuple(frames.shape) == (info.num_frames, info.height, info.width, 3)
    assert (info.height, info.width) == (BY_NAME[kind].size or (48, 64))
