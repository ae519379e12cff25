"""SynthActions generation speed: default videos (128x128, 10 fps) per second on one core, H.264 encoding
and every file of `action100m synth` included, and the share of that time spent drawing frames.

The process is pinned to one CPU; the renderer is numpy, the encoder runs one thread (as always in
SynthActions, for byte-identical output). The demo budget: 200 videos in well under a minute.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action100m.synth.generate import generate_dataset, video_spec  # noqa: E402
from action100m.synth.render import render_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="40 videos instead of 200")
    parser.add_argument("--videos", type=int, default=None)
    args = parser.parse_args()
    videos = args.videos or (40 if args.quick else 200)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = generate_dataset(Path(tmp) / "synth", videos, seed=0)
        total = time.perf_counter() - started
    started = time.perf_counter()
    frames = 0
    for index in range(videos):
        frames += sum(1 for _ in render_frames(video_spec(0, index)))
    drawing = time.perf_counter() - started
    per_second = videos / total
    print(
        f"SynthActions, {videos} videos at 128x128, 10 fps, on one core "
        f"({summary['seconds_of_video'] / 60:.1f} min of video, {frames} frames, {summary['steps']} steps)"
    )
    print(
        f"  generate (sample, draw, encode H.264, narrate, write): {total:.2f} s = {per_second:.1f} videos/s, "
        f"{frames / total:.0f} frames/s"
    )
    print(
        f"  of which sampling and drawing frames: {drawing:.2f} s ({100 * drawing / total:.0f}%), "
        f"{frames / drawing:.0f} frames/s"
    )
    measured = "measured" if videos == 200 else f"extrapolated from {videos}"
    seconds_for_200 = total if videos == 200 else 200 / per_second
    print(f"  200 videos: {seconds_for_200:.1f} s ({measured})")
    print(f"RESULT videos_per_s={per_second:.2f} seconds_for_200={seconds_for_200:.1f}")


if __name__ == "__main__":
    main()
