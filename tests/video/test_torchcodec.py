import pickle
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from action100m.config import VideoBackend, VideoConfig
from action100m.video import VideoDecodeError, open_readable, open_video
from action100m.video.pattern import moving_square_frames
from action100m.video.torchcodec_backend import torchcodec_reason
from tests.video.kinds import BY_NAME, KIND_NAMES, write_kind


class Clips(Dataset):
    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return 4

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.source.read_frames([k, k + 1])


def test_bytes_input_gives_the_decord_frames(make_video):
    path = make_video(num_frames=20)
    frames = open_video(path.read_bytes(), "torchcodec", name="clip").read_frames([0, 7, 19])
    assert torch.equal(frames, open_video(path, "decord").read_frames([0, 7, 19]))


def test_a_pickled_source_reads_in_forked_dataloader_workers(make_video):
    source = open_video(make_video(num_frames=10), "torchcodec")
    expected = torch.stack([source.read_frames([k, k + 1]) for k in range(4)])  # decoder open in the parent
    clone = pickle.loads(pickle.dumps(source))
    assert clone._decoder is None and torch.equal(clone.read_frames([0, 1]), expected[0])
    loader = DataLoader(Clips(source), batch_size=4, num_workers=2, multiprocessing_context="fork")
    assert torch.equal(torch.cat(list(loader)), expected)


@pytest.mark.parametrize("damage", ["truncated", "not a video"])
def test_unreadable_files_are_one_line_naming_the_video(make_video, damage):
    path = make_video(num_frames=30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a video\n" * 50)
    with pytest.raises(VideoDecodeError, match=r"clip\.mp4: ") as failed:
        open_video(path, "torchcodec").read_frames(list(range(30)))
    assert "\n" not in str(failed.value) and ".cpp:" not in str(failed.value)


def test_the_cpp_location_is_dropped_from_reasons():
    message = (
        "SingleStreamDecoder, /__w/torchcodec/src/SingleStreamDecoder.cpp:41, Could not open input\nmore"
    )
    assert torchcodec_reason(RuntimeError(message)) == "Could not open input"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_says_so(make_video):
    with pytest.raises(VideoDecodeError, match="clip.mp4: device 'cuda' asked for but no GPU is present"):
        _ = open_video(make_video(), "torchcodec", device="cuda").info


# torchcodec here indexes 20 frames of the MPEG-2 transport stream and decodes 19 (its first frame is lost).
TORCHCODEC_FAILS = {"mpeg2_ts"}


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_torchcodec_reads_every_kind_but_mpeg2_ts_which_falls_back(tmp_path, kind):
    path = write_kind(tmp_path, BY_NAME[kind], list(moving_square_frames(20, 48, 64)), fps=10)
    source = open_readable(path, "torchcodec")
    assert source.backend == ("decord" if kind in TORCHCODEC_FAILS else "torchcodec")
    assert source.read_frames(list(range(source.info.num_frames))).shape[0] == source.info.num_frames


def test_without_ffmpeg_libraries_torchcodec_is_passed_over(make_video, monkeypatch):
    # torchcodec loads the system FFmpeg at import; pip cannot install it, so a machine may lack it
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # the import fails, as it does there
    path = make_video(num_frames=12)
    with pytest.raises(VideoDecodeError, match="torchcodec cannot load FFmpeg's libraries") as err:
        open_video(path, "torchcodec", name="clip").read_frames([0])
    assert str(err.value).startswith("clip: ") and "\n" not in str(err.value)
    source = open_readable(path, "torchcodec", "clip", device="cpu")
    assert source.backend == "decord" and torch.equal(
        source.read_frames([3]), open_video(path, "decord").read_frames([3])
    )


@pytest.mark.parametrize("backend", ["decord", "pyav", "torchcodec"])
def test_the_video_config_gives_each_backend_the_options_it_takes(make_video, backend):
    video = VideoConfig(backend=VideoBackend(backend), num_threads=1)
    source = open_readable(make_video(num_frames=12), backend, "clip", **video.decoder_options())
    assert source.backend == backend and source.num_threads == 1
    assert getattr(source, "device", "cpu") == "cpu"
