"""Data planning at the release's scale: 1.2M videos, ~147M nodes in 12,000 shards of 100 videos.

The release is synthetic and holds only what the planner reads: per shard an (empty) tar, its .done
marker and its cached scan (action100m.train.data.scan's compact format, drawn with numpy: ~122 nodes a
video, realistic durations, flags and brief actions from a Zipf vocabulary). It is generated once per
seed and size into a temp folder and reused. Then, each in a fresh process so that the generator's
memory does not count:
  plan      plan_data() on the full release, computing the plan (the first rank's cost)
  filtered  the same with data.min_duration=8 (a filter that cuts into groups: per-node durations read)
  rank      plan_data() again: a second rank (or a rerun) reading the cached plan
  resample  the plan with data.resample.enabled (brief actions counted, deduplicated, per text)
  import    importing the planner only (the floor under the figures above; a training rank
            imports torch and Lightning too, ~1 GB more)
Peak RSS is each process's VmHWM. Targets: plan <= 60 s and <= 2 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action100m.train.data.scan import ANNOTATED, FIELD_BITS, SCAN_VERSION, pack_scan, scan_path  # noqa: E402

VIDEOS, PER_SHARD, NODES_PER_VIDEO, VOCABULARY = 1_200_000, 100, 122, 3_000_000
TEXT_WIDTH = 14  # "brief-" + 8 digits


def brief_texts(ids: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Offsets and UTF-8 blob of the texts "brief-<id>", built without a Python string per text."""
    digits = (ids[:, None] // 10 ** np.arange(7, -1, -1)) % 10 + ord("0")
    rows = np.empty((len(ids), TEXT_WIDTH), dtype=np.uint8)
    rows[:, :6] = np.frombuffer(b"brief-", dtype=np.uint8)
    rows[:, 6:] = digits
    return np.arange(len(ids) + 1, dtype=np.int64) * TEXT_WIDTH, rows.tobytes()


def shard_scan(rng: np.random.Generator, videos: int) -> tuple[bytes, int]:
    sizes = np.maximum(1, rng.geometric(1 / NODES_PER_VIDEO, videos))
    nodes = int(sizes.sum())
    durations = np.round(rng.lognormal(1.2, 1.1, nodes), 3)
    annotated = durations >= 4.0
    flags = np.full(nodes, FIELD_BITS["segment_caption"] | FIELD_BITS["action_label"], dtype=np.uint16)
    flags[rng.random(nodes) < 0.5] |= FIELD_BITS["frame_caption"]
    flags[rng.random(nodes) < 0.3] |= FIELD_BITS["asr"]
    has_action = annotated & (rng.random(nodes) < 0.9)
    flags[annotated] |= ANNOTATED | FIELD_BITS["summary_brief"] | FIELD_BITS["summary_detailed"]
    flags[has_action] |= FIELD_BITS["action_brief"] | FIELD_BITS["action_detailed"]
    vocabulary = np.minimum(rng.zipf(1.3, nodes), VOCABULARY) - 1
    ids, index = np.unique(vocabulary[has_action], return_inverse=True)
    briefs = np.full(nodes, -1, dtype=np.int32)
    briefs[has_action] = index
    offsets, blob = brief_texts(ids)
    return pack_scan(durations, flags, briefs, offsets, blob, 0), nodes


def generate(root: Path, videos: int, seed: int) -> dict:
    """The synthetic release under root (reused when already complete); returns its size."""
    done = root / "generated.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    (root / "shards").mkdir(parents=True)
    shards, nodes = -(-videos // PER_SHARD), 0
    for index in range(shards):
        name = f"action100m-{index:06d}.tar"
        count = min(PER_SHARD, videos - index * PER_SHARD)
        data, shard_nodes = shard_scan(np.random.default_rng([seed, index]), count)
        sha256 = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()
        marker = {
            "shard": name,
            "samples": count,
            "sha256": sha256,
            "config_hash": "synthetic",
            "stats": {"videos": count, "nodes": shard_nodes},
        }
        (root / "shards" / name).touch()
        (root / "shards" / f"{name}.done").write_text(json.dumps(marker))
        target = scan_path(root / "cache", root / "shards" / name, sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        nodes += shard_nodes
    size = {"videos": videos, "shards": shards, "nodes": nodes, "seed": seed, "scan_version": SCAN_VERSION}
    done.write_text(json.dumps(size))
    return size


CHILD = """
import json, sys, time
started = time.perf_counter()
from action100m.train.data.plan import plan_data
from action100m.train.data.config import DataConfig
imported = time.perf_counter()
from action100m.train.data.config import ResampleConfig
cfg = DataConfig(shards=sys.argv[1], min_duration=float(sys.argv[2]),
                 resample=ResampleConfig(enabled=sys.argv[3] == "resample"))
described = plan_data(cfg).describe() if sys.argv[3] != "import" else None
finished = time.perf_counter()
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"seconds": finished - imported, "import_seconds": imported - started,
                  "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024, "plan": described}))
"""


def child(root: Path, what: str, min_duration: float = 0.0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(min_duration), what],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1/50 of the release (24,000 videos)")
    parser.add_argument("--videos", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "action100m-bench")
    args = parser.parse_args()
    videos = args.videos or (VIDEOS // 50 if args.quick else VIDEOS)
    root = args.workdir / f"data_plan_scale-{videos}-{args.seed}-v{SCAN_VERSION}"
    started = time.perf_counter()
    size = generate(root, videos, args.seed)
    print(
        f"release: {size['videos']} videos, {size['nodes']} nodes, {size['shards']} shards in {root} "
        f"(ready in {time.perf_counter() - started:.1f} s)"
    )
    shutil.rmtree(root / "cache" / "plan", ignore_errors=True)
    plan = child(root, "plan")
    filtered = child(root, "plan", 8.0)
    rank = child(root, "plan")
    resample = child(root, "resample")
    floor = child(root, "import")
    print(
        f"  plan (first rank): {plan['seconds']:.2f} s, peak RSS {plan['peak_rss_mb']:.0f} MB; "
        f"{plan['plan']['samples']} samples"
    )
    print(
        f"  plan with min_duration=8 (reads per-node durations): {filtered['seconds']:.2f} s, "
        f"peak RSS {filtered['peak_rss_mb']:.0f} MB; {filtered['plan']['samples']} samples"
    )
    print(
        f"  second rank (cached plan): {rank['seconds']:.2f} s, peak RSS {rank['peak_rss_mb']:.0f} MB "
        f"(importing the planner alone: {floor['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"  plan with resampling on (counts every brief action): {resample['seconds']:.2f} s, "
        f"peak RSS {resample['peak_rss_mb']:.0f} MB"
    )
    assert rank["plan"] == plan["plan"], "the cached plan differs from the computed one"
    print(
        f"RESULT plan_seconds={plan['seconds']:.2f} plan_peak_rss_mb={plan['peak_rss_mb']:.0f} "
        f"rank_rss_mb={rank['peak_rss_mb']:.0f} rank_seconds={rank['seconds']:.2f} "
        f"filtered_plan_seconds={filtered['seconds']:.2f} filtered_plan_peak_rss_mb={filtered['peak_rss_mb']:.0f} "
        f"resample_plan_seconds={resample['seconds']:.2f} resample_plan_peak_rss_mb={resample['peak_rss_mb']:.0f} "
        f"import_rss_mb={floor['peak_rss_mb']:.0f} nodes={size['nodes']}"
    )


if __name__ == "__main__":
    main()
