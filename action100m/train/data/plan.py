"""The data plan: the shards of the data scale and the samples they yield, known before training.

Kept free of torch and Lightning so that planning costs what planning needs (the module's imports
alone are ~1 GB of RSS and seconds per process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from action100m.errors import ConfigError
from action100m.train.data.config import DataConfig
from action100m.train.data.fields import FieldMix
from action100m.train.data.scale import ScaleSubset, select_scale
from action100m.train.data.scan import ScanSummary, cache_folder, check, load_or_compute, plan_key, summarize


@dataclass
class DataPlan:
    """What a run trains on, known before training starts: O(shards), plus the brief-action counts
    when semantic resampling is on."""

    subset: ScaleSubset
    scan: ScanSummary
    mix: FieldMix

    def describe(self) -> dict:
        return {
            "scale": self.subset.scale,
            "shards": len(self.subset.shards),
            "total_shards": self.subset.total_shards,
            "videos": self.subset.videos,
            "nodes": self.subset.nodes,
            "samples": self.scan.samples,
            "samples_per_field": self.scan.per_field,
        }


def plan_data(cfg: DataConfig) -> DataPlan:
    """Choose the shards of the scale and count their samples; every bad-input error is raised here.

    The counts are computed by one process and cached (cache/plan/plan-<key>.json); every other rank,
    and every rerun with the same shards and filters, reads them (see action100m.train.data.scan)."""
    for key in ("epoch_batches", "batch_size", "shuffle_buffer", "open_shards"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"data.{key} must be at least 1, got {getattr(cfg, key)}")
    mix = FieldMix(cfg.text_fields)
    subset = select_scale(cfg.shards, cfg.scale)
    key = plan_key(subset, cfg, mix)
    target = cache_folder(subset, cfg) / "plan" / f"plan-{key[:16]}.json"

    def compute(heartbeat: Callable[[], None]) -> dict:
        return {"key": key, **asdict(summarize(subset, cfg, mix, heartbeat))}

    cached = load_or_compute(target, compute)
    if cached.get("key") != key:
        raise ConfigError(f"data.cache_dir: {target} is the plan of other shards or filters; delete it")
    cached.pop("key")
    return DataPlan(subset, check(ScanSummary(**cached), subset, cfg, mix), mix)
