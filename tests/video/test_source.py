import itertools
import multiprocessing
import os
import pickle

import av
import numpy as np
import pytest
import torch

from action100m.video import (
    BACKENDS,
    FrameIndexError,
    VideoDecodeError,
    VideoNotFoundError,
    open_video,
    probe,
)

ALL_BACKENDS = sorted(BACKENDS)


def background_level(frame: torch.Tensor) -> float:
    """The pattern writes frame i's index into the green channel of its background (i * 7)."""
    return float(frame[..., 1].float().median())


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_probe_reports_what_was_written(make_video, backend):
    path = make_video(num_frames=37, fps=12, height=48, width=64)
    info = open_video(path, backend).info
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (37, 12.0, 64, 48, "h264")
    assert info.duration == pytest.approx(37 / 12)
    assert probe(path) == info


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_read_frames_returns_the_requested_frames_in_order(make_video, backend):
    path = make_video(num_frames=30)
    wanted = [17, 3, 3, 29, 0]
    frames = open_video(path, backend).read_frames(wanted)
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (5, 48, 64, 3)
    for frame, index in zip(frames, wanted, strict=True):
        assert background_level(frame) == pytest.approx(index * 7, abs=4)
    assert torch.equal(frames[1], frames[2])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_successive_reads_reuse_the_decoder(make_video, backend):
    path = make_video(num_frames=40, gop=8)
    source = open_video(path, backend, seek_threshold=12) if backend == "pyav" else open_video(path, backend)
    first, second, third = source.read_frames([30, 31]), source.read_frames([2, 5]), source.read_frames([31])
    fresh = open_video(path, backend).read_frames([30, 31, 2, 5, 31])
    assert torch.equal(torch.cat([first, second, third]), fresh)


def test_backends_return_identical_frames(make_video):
    assert ALL_BACKENDS == ["decord", "pyav", "torchcodec"]
    path = make_video(num_frames=45, gop=6)
    dense = list(range(45))
    sparse = [2, 9, 10, 31, 44]
    for indices in (dense, sparse):
        decoded = {backend: open_video(path, backend).read_frames(indices) for backend in ALL_BACKENDS}
        for a, b in itertools.combinations(ALL_BACKENDS, 2):
            assert torch.equal(decoded[a], decoded[b]), (a, b)


def test_pyav_seek_path_matches_decoding_from_the_start(make_video):
    path = make_video(num_frames=60, gop=5)
    indices = [23, 24, 40, 59]
    from_start = open_video(path, "pyav", seek_threshold=10_000).read_frames(indices)
    seeking = open_video(path, "pyav", seek_threshold=0).read_frames(indices)
    assert torch.equal(from_start, seeking)
    assert torch.equal(seeking, open_video(path, "decord").read_frames(indices))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_bytes_and_path_give_the_same_frames(make_video, backend):
    path = make_video(num_frames=20)
    from_path = open_video(path, backend).read_frames([0, 7, 19])
    from_bytes = open_video(path.read_bytes(), backend, name="clip").read_frames([0, 7, 19])
    assert torch.equal(from_path, from_bytes)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_read_times_picks_the_frame_shown_at_each_time(make_video, backend):
    path = make_video(num_frames=30, fps=10)
    frames = open_video(path, backend).read_times([0.0, 0.05, 0.1, 1.25, 2.99])
    levels = [round(background_level(f) / 7) for f in frames]
    assert levels == [0, 0, 1, 12, 29]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_out_of_range_requests_name_the_video(make_video, backend):
    path = make_video(num_frames=10, fps=10)
    source = open_video(path, backend)
    with pytest.raises(FrameIndexError, match=r"clip\.mp4: frame index 10 outside \[0, 9\]"):
        source.read_frames([0, 10])
    with pytest.raises(FrameIndexError, match="time 5.000s outside"):
        source.read_times([5.0])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_missing_file(tmp_path, backend):
    with pytest.raises(VideoNotFoundError, match=r"nope\.mp4: no such file"):
        open_video(tmp_path / "nope.mp4", backend)


def test_what_is_there_instead_of_a_file_is_named(tmp_path):
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")  # a reader that opened it would wait for a writer forever
    expected = {
        "folder.mp4": "a directory, not a file",
        "loop.mp4": "a symlink loop",
        "dangling.mp4": f"a broken symlink (to {tmp_path / 'gone.mp4'})",
        "pipe.mp4": "not a regular file (named pipe)",
    }
    for name, reason in expected.items():
        with pytest.raises(VideoNotFoundError) as err:
            open_video(tmp_path / name)
        assert str(err.value) == f"{tmp_path / name}: {reason}"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_zero_byte_file(tmp_path, backend):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4: empty file"):
        open_video(tmp_path / "empty.mp4", backend)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_not_a_video(tmp_path, backend):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(VideoDecodeError, match=r"notes\.mp4"):
        open_video(path, backend).read_frames([0])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_truncated_file(make_video, backend):
    path = make_video(num_frames=30)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match=r"clip\.mp4"):
        open_video(path, backend).read_frames(list(range(30)))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_audio_only_file(tmp_path, backend):
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for _ in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError, match=r"audio\.mp4: .*(no video stream|cannot open)"):
        open_video(path, backend).read_frames([0])


def _read_in_child(source) -> list:
    # as DataLoader workers do: GNU OpenMP's thread team, once used by the parent (torch's index_select on
    # large frames), does not survive a fork, so a forked child runs torch on one thread
    torch.set_num_threads(1)
    return source.read_frames([1, 2]).tolist()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_sources_pickle_and_reopen_in_forked_workers(make_video, backend):
    path = make_video(num_frames=10)
    source = open_video(path, backend)
    expected = source.read_frames([1, 2])  # the decoder now exists in this process
    clone = pickle.loads(pickle.dumps(source))
    assert clone._decoder is None
    assert torch.equal(clone.read_frames([1, 2]), expected)
    for _ in range(3):  # forks while this process holds an open decoder (threads running)
        source.read_frames([5])
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(_read_in_child, [source, source])
        assert all(torch.equal(torch.tensor(r, dtype=torch.uint8), expected) for r in results)
    assert torch.equal(source.read_frames([1, 2]), expected)  # the parent reopens after the fork


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_a_child_forked_after_the_parent_decoded_with_pyav_decodes(make_video, backend):
    """The parent decodes with PyAV and closes the source; forked children then decode. With av 18.1.1
    `frame.to_ndarray(format="rgb24")` kept a per-thread swscale context whose slice threads a child
    inherits dead: every child hung at its first frame."""
    path = make_video(num_frames=10, width=640, height=360)  # big enough for swscale to slice-thread
    with open_video(path, "pyav") as parent:
        parent.read_frames([1, 2])
    expected = open_video(path, backend).read_frames([1, 2])
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_read_in_child, [open_video(path, backend), open_video(path, backend)])
    assert all(torch.equal(torch.tensor(r, dtype=torch.uint8), expected) for r in results)


def test_unknown_backend(make_video):
    with pytest.raises(ValueError, match="unknown video backend 'ffmpeg'"):
        open_video(make_video(), "ffmpeg")
