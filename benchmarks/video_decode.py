"""Decode speed of the three video backends, side by side on the same file in one run.

Reads (a) every 4th frame of the whole video, as segmentation does, and (b) 32 uniform frames of
each of 20 spans, as captioning does, with decord, PyAV's one-pass sequential decoder and torchcodec.
Then PyAV's YUV-to-RGB conversion alone, at 360p and 1080p, through the decoder's own swscale context
(`PyAVSource` makes one per decoder, so that no conversion state crosses a fork) at the thread counts it
runs with: 1 (training's loader workers, `data.decode_threads`) and the build's default, up to 4.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter

from action100m.video import BACKENDS, open_video
from action100m.video.pattern import moving_square_frames
from action100m.video.sampling import every_nth_index, uniform_indices
from action100m.video.writer import write_video


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


DEFAULT_THREADS = min(4, os.cpu_count() or 1)  # PyAVSource's with num_threads=0


def rgb_conversion_rates(path: Path, repeats: int) -> dict[str, float]:
    """Frames/s of each conversion over the video's decoded frames, the best of `repeats` interleaved
    passes (after one warm-up pass each)."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    one, many = VideoReformatter(), VideoReformatter()
    conversions = {
        "1": lambda frame: one.reformat(frame, format="rgb24", threads=1).to_ndarray(),
        "default": lambda frame: many.reformat(frame, format="rgb24", threads=DEFAULT_THREADS).to_ndarray(),
    }
    best = dict.fromkeys(conversions, 0.0)
    for repeat in range(repeats + 1):
        for name, convert in conversions.items():
            elapsed, _ = timed(lambda c=convert: [c(frame) for frame in frames])
            best[name] = max(best[name], len(frames) / elapsed) if repeat else 0.0
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 20 s video instead of 2 minutes")
    args = parser.parse_args()
    seconds, fps, height, width = (20 if args.quick else 120), 30, 360, 640
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(
            Path(tmp) / "bench.mp4", moving_square_frames(seconds * fps, height, width, 40), fps=fps
        )
        info = open_video(path).info
        strided = every_nth_index(info.num_frames, 4)
        spans = [(k * info.duration / 20, (k + 1) * info.duration / 20) for k in range(20)]
        per_span = [uniform_indices(a, b, info.fps, info.num_frames, 32) for a, b in spans]
        rates: dict[str, float] = {}
        for backend in BACKENDS:  # imports and library loads are once per process: not decode speed
            open_video(path, backend).read_frames([0])
        for backend in BACKENDS:
            elapsed, _ = timed(lambda b=backend: open_video(path, b).read_frames(strided))
            rates[f"{backend}_strided_fps"] = len(strided) / elapsed
            elapsed, _ = timed(lambda b=backend: [open_video(path, b).read_frames(ix) for ix in per_span])
            rates[f"{backend}_spans_fps"] = 20 * 32 / elapsed
        conversion: dict[str, dict[str, float]] = {}
        for label, (h, w) in {"360p": (360, 640), "1080p": (1080, 1920)}.items():
            clip = write_video(
                Path(tmp) / f"{label}.mp4", moving_square_frames(30 if args.quick else 90, h, w), fps=fps
            )
            conversion[label] = rgb_conversion_rates(clip, 3 if args.quick else 5)
    print(f"video {info.width}x{info.height}, {info.num_frames} frames at {info.fps:g} fps")
    print(
        f"{'backend':10s} {'every 4th frame/s':>18s} {'vs decord':>9s} {'32 x 20 spans/s':>16s} {'vs decord':>9s}"
    )
    ratios: dict[str, float] = {}
    for backend in BACKENDS:
        for access in ("strided", "spans"):
            ratios[f"{backend}_vs_decord_{access}"] = (
                rates[f"{backend}_{access}_fps"] / rates[f"decord_{access}_fps"]
            )
        print(
            f"{backend:10s} {rates[f'{backend}_strided_fps']:18.1f} {ratios[f'{backend}_vs_decord_strided']:9.2f} "
            f"{rates[f'{backend}_spans_fps']:16.1f} {ratios[f'{backend}_vs_decord_spans']:9.2f}"
        )
    print(
        f"PyAV YUV->RGB conversion through the decoder's own context, frames/s: 1 vs {DEFAULT_THREADS} threads"
    )
    for label, rate in conversion.items():
        print(f"  {label:6s} {rate['1']:8.1f} {rate['default']:8.1f}  ({rate['default'] / rate['1']:.2f}x)")
    print(
        f"RESULT decord_strided_fps={rates['decord_strided_fps']:.1f} pyav_strided_fps={rates['pyav_strided_fps']:.1f} "
        f"pyav_vs_decord_strided={ratios['pyav_vs_decord_strided']:.2f} "
        f"pyav_vs_decord_spans={ratios['pyav_vs_decord_spans']:.2f} "
        f"torchcodec_strided_fps={rates['torchcodec_strided_fps']:.1f} "
        f"torchcodec_vs_decord_strided={ratios['torchcodec_vs_decord_strided']:.2f} "
        f"torchcodec_vs_decord_spans={ratios['torchcodec_vs_decord_spans']:.2f} "
        + " ".join(
            f"pyav_rgb_{DEFAULT_THREADS}threads_vs_1_{label}={rate['default'] / rate['1']:.2f}"
            for label, rate in conversion.items()
        )
    )


if __name__ == "__main__":
    main()
