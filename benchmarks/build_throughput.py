"""The shard builder end to end with `build=demo` on SynthActions: videos per minute, peak memory
for a small and a ten-times larger input (it must stay flat: shards are built one at a time), and
where the time goes by stage. Each build runs as its own process, measured by the kernel (wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from action100m.synth.generate import generate_dataset  # noqa: E402


def build(videos: int, folder: Path) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MiB, build summary) for `videos` SynthActions videos."""
    synth = folder / f"synth{videos}"
    generate_dataset(synth, videos=videos, seed=0)
    out = folder / f"out{videos}"
    command = [
        sys.executable,
        str(ROOT / "data_build" / "build.py"),
        f"input={synth / 'manifest.jsonl'}",
        f"output={out}",
        "build=demo",
        "progress=false",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"build of {videos} videos failed with status {status}")
    return seconds, usage.ru_maxrss / 1024, json.loads((out / "stats.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 and 60 videos instead of 20 and 200")
    args = parser.parse_args()
    small, large = (20, 60) if args.quick else (20, 200)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {n: build(n, Path(tmp)) for n in (small, large)}
    for n, (seconds, rss, summary) in runs.items():
        split = ", ".join(f"{stage} {s:.1f} s" for stage, s in summary["stage_seconds"].items())
        print(
            f"{n:4d} videos: {seconds:6.1f} s ({60 * n / seconds:5.1f} videos/min), peak RSS {rss:6.0f} MiB, "
            f"{summary['nodes']} nodes, {summary['annotated_nodes']} annotated; {split}"
        )
    seconds, rss_large, summary = runs[large]
    stage_total = sum(summary["stage_seconds"].values())
    shares = " ".join(f"{stage}_share={s / stage_total:.2f}" for stage, s in summary["stage_seconds"].items())
    print(
        f"RESULT videos_per_min={60 * large / seconds:.1f} rss_ratio_{large}_{small}={rss_large / runs[small][1]:.2f} "
        f"{shares}"
    )


if __name__ == "__main__":
    main()
