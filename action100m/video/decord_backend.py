"""decord backend (default): batched random access with accurate seeking."""

from __future__ import annotations

from typing import Any

import numpy as np

from action100m.video.pyav_backend import PyAVSource
from action100m.video.source import VideoDecodeError, VideoInfo, VideoInput, VideoSource


class DecordSource(VideoSource):
    backend = "decord"

    def __init__(self, src: VideoInput, name: str | None = None, num_threads: int = 0):
        super().__init__(src, name)
        self.num_threads = num_threads

    def _open_decoder(self) -> Any:
        import decord  # imported here: decord starts threads at import, which must not cross a fork

        try:
            return decord.VideoReader(self._open_input(), ctx=decord.cpu(0), num_threads=self.num_threads)
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoDecodeError(self.name, f"cannot open: {str(err).splitlines()[0]}") from err

    def _probe(self) -> VideoInfo:
        # Size and codec from the headers; frame count and fps as decord indexes them.
        header = PyAVSource(self._bytes if self._path is None else self._path, name=self.name).info
        reader = self._get_decoder()
        num_frames, fps = len(reader), float(reader.get_avg_fps())
        return VideoInfo(
            duration=num_frames / fps if fps > 0 else 0.0,
            fps=fps,
            num_frames=num_frames,
            width=header.width,
            height=header.height,
            codec=header.codec,
        )

    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        import decord

        try:
            return self._get_decoder().get_batch(indices).asnumpy()
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoDecodeError(self.name, f"decode failed: {str(err).splitlines()[0]}") from err
