"""torchcodec backend: PyTorch's FFmpeg decoder, batched random access, on the CPU or on NVDEC."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from action100m.video.source import VideoDecodeError, VideoInfo, VideoInput, VideoSource

# torchcodec's C++ errors start "SingleStreamDecoder, /__w/torchcodec/.../SingleStreamDecoder.cpp:41, ":
# the build machine's source path says nothing a user can act on.
_CPP_PREFIX = re.compile(r"^\w+, \S+\.cpp:\d+, ")


def torchcodec_reason(err: BaseException) -> str:
    """torchcodec's error as one readable line, without the C++ source location."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return _CPP_PREFIX.sub("", lines[0]) if lines else type(err).__name__


class TorchCodecSource(VideoSource):
    backend = "torchcodec"

    def __init__(self, src: VideoInput, name: str | None = None, num_threads: int = 0, device: str = "cpu"):
        """`device`: "cpu", or "cuda" (or "cuda:N") to decode on the GPU's NVDEC; frames come back on
        the CPU either way."""
        super().__init__(src, name)
        self.num_threads = num_threads
        self.device = device

    def _open_decoder(self) -> Any:
        import torch

        try:  # imported here, like decord: torchcodec loads the system FFmpeg at import
            from torchcodec.decoders import VideoDecoder
        except (ImportError, OSError, RuntimeError) as err:
            # no FFmpeg libraries (pip cannot install them): a reason the fallback chain can pass over
            raise VideoDecodeError(
                self.name,
                f"torchcodec cannot load FFmpeg's libraries ({type(err).__name__}); install them "
                "(Debian: bash engines/system_packages.sh) or use another backend",
            ) from err
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise VideoDecodeError(self.name, f"device {self.device!r} asked for but no GPU is present")
        try:
            # exact: the file is scanned once at open, so frame indices and the frame count are exact
            return VideoDecoder(
                self._path if self._path is not None else self._bytes,
                seek_mode="exact",
                dimension_order="NHWC",
                num_ffmpeg_threads=self.num_threads,  # 0: FFmpeg's choice
                device=self.device,
            )
        except (RuntimeError, ValueError) as err:
            raise VideoDecodeError(self.name, f"cannot open: {torchcodec_reason(err)}") from err

    def _probe(self) -> VideoInfo:
        meta = self._get_decoder().metadata
        # measured from the scanned frames, as FFmpeg's average rate that decord and PyAV report: the
        # header's rate is the base rate of a variable-rate video (twice the mean in tests' vfr kind)
        fps = float(meta.average_fps or 0.0)
        num_frames = int(meta.num_frames or 0)
        return VideoInfo(
            duration=num_frames / fps if fps > 0 else 0.0,
            fps=fps,
            num_frames=num_frames,
            width=int(meta.width or 0),
            height=int(meta.height or 0),
            codec=str(meta.codec),
        )

    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        try:
            frames = self._get_decoder().get_frames_at(indices).data
        except (RuntimeError, ValueError) as err:
            raise VideoDecodeError(self.name, f"decode failed: {torchcodec_reason(err)}") from err
        return frames.cpu().numpy()
