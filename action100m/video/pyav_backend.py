"""PyAV (FFmpeg) backend: header probing, and sequential decoding that keeps only the wanted frames.

Frames are decoded in order from one seek point; the decoder never seeks per frame, which on long GOPs
would decode each GOP again for every frame asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from action100m.video.source import VideoDecodeError, VideoInfo, VideoInput, VideoSource


def _video_stream(container: Any, name: str) -> Any:
    if not container.streams.video:
        raise VideoDecodeError(name, "no video stream (audio-only or not a video)")
    return container.streams.video[0]


def _open_container(source: Any, name: str) -> Any:
    try:
        return av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(name, f"cannot open: {err}") from err


def _count_packets(container: Any, stream: Any) -> int:
    """Frame count from the demuxer when the header has none (no decoding)."""
    count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    container.seek(0)
    return count


def probe_container(container: Any, name: str) -> VideoInfo:
    stream = _video_stream(container, name)
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    num_frames = stream.frames or _count_packets(container, stream)
    context = stream.codec_context
    return VideoInfo(
        duration=num_frames / fps if fps > 0 else 0.0,
        fps=fps,
        num_frames=num_frames,
        width=int(context.width),
        height=int(context.height),
        codec=str(context.name),
    )


def probe(src: VideoInput, name: str | None = None) -> VideoInfo:
    """Duration, fps, frame count, size and codec of a video, read from its headers."""
    return PyAVSource(src, name=name).info


class PyAVSource(VideoSource):
    backend = "pyav"

    def __init__(
        self, src: VideoInput, name: str | None = None, num_threads: int = 0, seek_threshold: int = 250
    ):
        """`seek_threshold`: when the first wanted frame lies this many frames in, seek to the keyframe
        before it and index frames by timestamp instead of decoding from the start."""
        super().__init__(src, name)
        self.num_threads = num_threads
        self.seek_threshold = seek_threshold
        # The live decode position: a read that starts a little ahead of it continues decoding there,
        # so reading a long video in chunks decodes it once, front to back.
        self._live: Iterator[tuple[int, Any]] | None = None
        self._live_container: Any = None
        self._live_next = 0
        self._to_rgb: VideoReformatter | None = None

    def _open_decoder(self) -> Any:
        container = _open_container(self._open_input(), self.name)
        stream = _video_stream(container, self.name)
        # threading can only be set before the codec opens at the first decode
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self._threads
        # The RGB conversion's swscale context lives and dies with the decoder, so it is made anew in
        # each process (decoders are closed before every fork): `frame.to_ndarray(format=...)` uses one
        # context per thread since av 18.1.1, and a forked child that reuses the parent's waits forever
        # on slice threads that exist only in the parent.
        self._to_rgb = VideoReformatter()
        return container

    @property
    def _threads(self) -> int:
        """Decoding and conversion threads: `num_threads`, or up to 4 (training's workers ask for 1)."""
        return self.num_threads or min(4, os.cpu_count() or 1)

    def _close_decoder(self, decoder: Any) -> None:
        self._live = self._live_container = self._to_rgb = None
        decoder.close()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_live"] = state["_live_container"] = state["_to_rgb"] = None
        return state

    def _rgb(self, frame: Any) -> np.ndarray:
        return self._to_rgb.reformat(frame, format="rgb24", threads=self._threads).to_ndarray()

    def _probe(self) -> VideoInfo:
        container = _open_container(self._open_input(), self.name)
        try:
            return probe_container(container, self.name)
        except av.FFmpegError as err:
            raise VideoDecodeError(self.name, f"cannot read headers: {err}") from err
        finally:
            container.close()

    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        container = self._get_decoder()
        stream = _video_stream(container, self.name)
        first = indices[0]
        ahead = self._live_next <= first < self._live_next + self.seek_threshold
        if self._live is None or self._live_container is not container or not ahead:
            self._live, self._live_container = self._indexed_frames(container, stream, first), container
        wanted = iter(indices)
        target = next(wanted)
        frames: list[np.ndarray] = []
        try:
            for index, frame in self._live:
                self._live_next = index + 1
                while target is not None and index > target:
                    target = next(wanted, None)  # index skipped (duplicate timestamps): not decodable
                if target is None:
                    break
                if index == target:
                    frames.append(self._rgb(frame))
                    target = next(wanted, None)
                    if target is None:
                        break
        except av.FFmpegError as err:
            raise VideoDecodeError(self.name, f"decode failed: {err}") from err
        if not frames:
            return np.empty((0, self.info.height, self.info.width, 3), dtype=np.uint8)
        return np.stack(frames)

    def _indexed_frames(self, container: Any, stream: Any, first: int) -> Iterator[tuple[int, Any]]:
        """(frame index, frame) in presentation order, starting at or before `first`."""
        if first < self.seek_threshold:
            container.seek(0)
            yield from enumerate(container.decode(stream))
            return
        fps = self.info.fps
        time_base = stream.time_base or Fraction(1, 1)
        start = stream.start_time or 0
        container.seek(int(start + first / fps / time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                raise VideoDecodeError(self.name, "frame without timestamp after seek")
            yield round(float((frame.pts - start) * time_base) * fps), frame
