"""`make demo`: runs every part of the framework that exists so far, and names the parts still to come.

Today that is video I/O (encode, probe, decode with both backends, preprocess), the record schema
(the official release sample, loaded, validated and converted both ways) and the SynthActions world.
The full main job —
SynthActions → build → train at three scales → zero-shot eval → scaling report — replaces this as its
parts land.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from action100m.schema import read_official_json, to_official
from action100m.synth.generate import generate_dataset
from action100m.utils.atomic import write_json_atomic
from action100m.video import BACKENDS, open_video
from action100m.video.pattern import moving_square_frames
from action100m.video.sampling import uniform_indices
from action100m.video.transforms import preprocess_clip
from action100m.video.writer import write_video

NOT_YET_BUILT = (
    "V-JEPA 2 hierarchical segmentation (issue 4; runs in the demo once the shard builder composes it)",
    "Tree-of-Captions and model backends (issue 5)",
    "LLM aggregation with Self-Refine (issue 6)",
    "shard builder (issue 7)",
    "VL-JEPA training at several data scales (issue 8)",
    "zero-shot evaluation (issue 9)",
    "scaling-curve report (issue 10)",
)


def _video_check(cfg: DictConfig, out: Path) -> dict:
    path = write_video(out / "pattern.mp4", moving_square_frames(30, 96, 128), fps=10)
    options = {"num_threads": cfg.video.num_threads}
    chosen = cfg.video.backend.value
    source = open_video(path, chosen, **options)
    info = source.info
    indices = uniform_indices(0.0, info.duration, info.fps, info.num_frames, 8)
    frames = {name: open_video(path, name).read_frames(indices) for name in BACKENDS}
    identical = all(torch.equal(frames[chosen], other) for other in frames.values())
    clip = preprocess_clip(source.read_frames(indices), crop_size=64)
    print(f"  video   wrote {path.name}: {info.num_frames} frames, {info.fps:g} fps, "
          f"{info.width}x{info.height} {info.codec}")  # fmt: skip
    print(f"  video   read 8 uniform frames with {' and '.join(BACKENDS)}: identical={identical}; "
          f"preprocessed clip {tuple(clip.shape)} ({chosen} backend)")  # fmt: skip
    return {"frames": info.num_frames, "fps": info.fps, "backends_identical": identical}


def _schema_check(cfg: DictConfig) -> dict | None:
    sample = Path(cfg.shared_dir) / "action100m_official" / "hySSAAw4t24.json"
    if not sample.is_file():
        print(f"  schema  skipped: no official sample record at {sample}")
        return None
    raw = json.loads(sample.read_text(encoding="utf-8"))
    record = read_official_json(sample)[0].validate()
    lossless = to_official(record) == {column: values[0] for column, values in raw.items()}
    annotated = sum(node.annotation is not None for node in record.nodes)
    print(f"  schema  official record {record.video_uid}: {len(record.nodes)} nodes, "
          f"{len(record.leaves())} leaves, {annotated} annotated; valid; round trip lossless={lossless}")  # fmt: skip
    return {"nodes": len(record.nodes), "lossless": lossless}


def _synth_check(cfg: DictConfig, out: Path) -> dict:
    summary = generate_dataset(
        out / "synth", videos=cfg.synth_videos, seed=0, benchmark_clips=20, overwrite=True
    )
    print(f"  synth   {summary['videos']} SynthActions videos ({summary['steps']} steps, {summary['cuts']} cuts) "
          f"and {summary['benchmark_clips']} held-out benchmark clips -> {out / 'synth'}")  # fmt: skip
    return {"videos": summary["videos"], "steps": summary["steps"]}


def run_demo(cfg: DictConfig) -> dict:
    """Run what exists, write `<out>/summary.json`, and return the summary."""
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print("Action100M demo: the parts built so far")
    summary = {
        "video": _video_check(cfg, out),
        "schema": _schema_check(cfg),
        "synth": _synth_check(cfg, out),
        "not_yet_built": list(NOT_YET_BUILT),
    }
    print("Not built yet, so not run: " + "; ".join(NOT_YET_BUILT) + ".")
    summary["minutes"] = round((time.perf_counter() - started) / 60, 3)
    write_json_atomic(out / "summary.json", summary)
    print(f"Summary written to {out / 'summary.json'}")
    return summary
