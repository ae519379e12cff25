"""Segmentation: quality against SynthActions ground truth, and the speed figures of issue 4.

1. Boundary F1 at ±0.5 s and mean IoU of each tree's own cut into as many segments as the truth has,
   for the tiny V-JEPA 2 extractor (random init, the SynthActions preset: 1 of 2 frames, motion on),
   the same encoder with the paper's settings (1 of 4 frames, no motion term), and pixel features.
2. Ward clustering time at growing frame counts, and the exponent of time ~ n^k.
3. Tiny V-JEPA 2 windows encoded per second.
4. Frames read per kept frame (1.0: overlapping windows never read a frame twice), and frames the
   PyAV decoder produced per kept frame (≈ frame_step: codecs decode the frames in between).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action100m.synth.generate import generate_dataset  # noqa: E402
from action100m.video import PyAVSource, open_video  # noqa: E402
from data_build.segment import SegmentConfig, VJEPA2Features, score_tree, segment_videos, ward_merges  # noqa: E402

EXTRACTORS = {
    "tiny": SegmentConfig(features="vjepa2", model="tiny", frame_step=2, motion_weight=1.0),
    "tiny_paper_settings": SegmentConfig(features="vjepa2", model="tiny"),
    "pixel": SegmentConfig(features="pixel"),
}


class CountingPyAVSource(PyAVSource):
    """PyAV source that counts the frames it is asked for and the frames its decoder produces."""

    requested = 0
    produced = 0

    def read_frames(self, indices):
        CountingPyAVSource.requested += len(indices)
        return super().read_frames(indices)

    def _indexed_frames(self, container, stream, first):
        for item in super()._indexed_frames(container, stream, first):
            CountingPyAVSource.produced += 1
            yield item


def quality(root: Path) -> dict[str, dict[str, float]]:
    truths = [json.loads(line) for line in (root / "ground_truth.jsonl").read_text().splitlines()]
    manifest = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    results = {}
    for name, cfg in EXTRACTORS.items():
        start = time.perf_counter()
        videos = [(m["video_uid"], open_video(root / m["path"])) for m in manifest]
        trees = segment_videos(videos, cfg)
        scores = [score_tree(tree, truth) for tree, truth in zip(trees, truths, strict=True)]
        results[name] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        results[name]["nodes"] = float(np.mean([len(t.nodes) for t in trees]))
        print(
            f"{name:20s} F1 {results[name]['f1']:.3f}  P {results[name]['precision']:.3f}  "
            f"R {results[name]['recall']:.3f}  mIoU {results[name]['miou']:.3f}  "
            f"nodes/video {results[name]['nodes']:.0f}  ({time.perf_counter() - start:.1f} s)"
        )
    return results


def clustering_growth(sizes: list[int]) -> float:
    times = []
    for n in sizes:
        features = np.random.default_rng(0).normal(size=(n, 64)).cumsum(axis=0)
        start = time.perf_counter()
        ward_merges(features)
        times.append(time.perf_counter() - start)
        print(f"ward clustering {n:>7d} frames: {times[-1]:7.3f} s")
    for k in range(1, len(sizes)):
        print(f"  x{sizes[k] // sizes[k - 1]} frames -> x{times[k] / times[k - 1]:.1f} time")
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def encoder_and_decoding(root: Path) -> tuple[float, float, float]:
    manifest = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    cfg = SegmentConfig(features="vjepa2", model="tiny", decode_chunk=32)
    extractor = VJEPA2Features(cfg)
    videos = [CountingPyAVSource(root / m["path"]) for m in manifest]
    kept = sum(len(range(0, v.info.num_frames, cfg.frame_step)) for v in videos)
    start = time.perf_counter()
    extractor(videos)
    windows_per_s = extractor.windows_encoded / (time.perf_counter() - start)
    print(
        f"tiny V-JEPA 2: {extractor.windows_encoded} windows of {cfg.window} frames, {windows_per_s:.1f} windows/s"
    )
    read, produced = CountingPyAVSource.requested / kept, CountingPyAVSource.produced / kept
    print(
        f"frames read per kept frame {read:.2f}; frames decoded per kept frame {produced:.2f} (1 of {cfg.frame_step} kept)"
    )
    return windows_per_s, read, produced


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 videos and smaller clustering sizes")
    parser.add_argument("--videos", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    videos = args.videos or (20 if args.quick else 50)
    sizes = [2_000, 8_000, 32_000] if args.quick else [1_000, 10_000, 100_000]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate_dataset(root, videos, args.seed)
        print(f"SynthActions: {videos} videos, seed {args.seed}; boundary tolerance ±0.5 s")
        scores = quality(root)
        exponent = clustering_growth(sizes)
        windows_per_s, read, produced = encoder_and_decoding(root)
    print(
        f"RESULT boundary_f1_tiny={scores['tiny']['f1']:.3f} boundary_f1_pixel={scores['pixel']['f1']:.3f} "
        f"boundary_f1_tiny_paper_settings={scores['tiny_paper_settings']['f1']:.3f} "
        f"miou_tiny={scores['tiny']['miou']:.3f} miou_pixel={scores['pixel']['miou']:.3f} "
        f"cluster_growth_exponent={exponent:.2f} windows_per_s={windows_per_s:.1f} "
        f"frames_read_per_needed={read:.2f} frames_decoded_per_needed={produced:.2f}"
    )


if __name__ == "__main__":
    main()
