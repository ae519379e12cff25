"""Decode speed of the three video backends, side by side on the same file in one run.

Reads (a) every 4th frame of the whole video, as segmentation does, and (b) 32 uniform frames of
each of 20 spans, as captioning does, with decord, PyAV's one-pass sequential decoder and torchcodec.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from action100m.video import BACKENDS, open_video
from action100m.video.pattern import moving_square_frames
from action100m.video.sampling import every_nth_index, uniform_indices
from action100m.video.writer import write_video


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


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
        f"RESULT decord_strided_fps={rates['decord_strided_fps']:.1f} pyav_strided_fps={rates['pyav_strided_fps']:.1f} "
        f"pyav_vs_decord_strided={ratios['pyav_vs_decord_strided']:.2f} "
        f"pyav_vs_decord_spans={ratios['pyav_vs_decord_spans']:.2f} "
        f"torchcodec_strided_fps={rates['torchcodec_strided_fps']:.1f} "
        f"torchcodec_vs_decord_strided={ratios['torchcodec_vs_decord_strided']:.2f} "
        f"torchcodec_vs_decord_spans={ratios['torchcodec_vs_decord_spans']:.2f}"
    )


if __name__ == "__main__":
    main()
