"""decord backend (default): batched random access with accurate seeking."""

from __future__ import annotations

import re
from typing import Any

import av
import numpy as np

from action100m.video.pyav_backend import PyAVSource
from action100m.video.source import VideoDecodeError, VideoInfo, VideoInput, VideoSource

# decord's C++ checks read "[12:00:00] /src/video/video_reader.cc:151: Check failed: <condition>
# (<value> vs. <bound>) <message>" (or "<condition> : <message>") and then a stack trace. The message
# is what a user can act on; the clock time would make the same video fail with other bytes each run.
_LOG_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")
_CHECK_VALUES = re.compile(r"\((-?\d+) vs\. [^)]*\)")
# FFmpeg's own error codes (tagged, unlike errno values) name the real cause: a check on a stream
# index that fails with "Decoder not found" is a codec decord's FFmpeg was built without (AV1).
_FFMPEG_ERRORS = {-error.value: str(error.strerror) for error in av.error.ErrorType}


def decord_reason(err: BaseException) -> str:
    """decord's error as one readable line: no log prefix, stack trace, source path or check condition."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    line = _LOG_PREFIX.sub("", lines[0])
    if not line.startswith("Check failed: "):
        return line
    condition, _, message = line.removeprefix("Check failed: ").partition(" : ")
    values = _CHECK_VALUES.search(condition)
    if values is None:
        return message.removeprefix("ERROR ") or f"check failed: {condition}"
    message = (message or condition[values.end() :].strip()).removeprefix("ERROR ")
    meaning = _FFMPEG_ERRORS.get(int(values.group(1)))
    if meaning is None:
        return message or f"check failed: {condition[: values.start()].strip()}"
    return f"{meaning} ({message})" if message else meaning


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
            raise VideoDecodeError(self.name, f"cannot open: {decord_reason(err)}") from err

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
            raise VideoDecodeError(self.name, f"decode failed: {decord_reason(err)}") from err
