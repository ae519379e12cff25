"""The LightningDataModule over a shard set at one data scale (`DataPlan` and `plan_data` are
re-exported: action100m.train.run imports them from here)."""

from __future__ import annotations

import lightning as L

from action100m.errors import ConfigError
from action100m.train.data.clips import ClipCache, build_clip_cache
from action100m.train.data.config import DataConfig
from action100m.train.data.plan import DataPlan, plan_data
from action100m.train.data.resample import resampling_rates
from action100m.train.data.scale import select_scale
from action100m.train.data.scan import cache_folder
from action100m.train.data.stream import NodeStream, StreamLoader


class ActionDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, plan: DataPlan | None = None):
        super().__init__()
        self.cfg = cfg
        self.plan = plan or plan_data(cfg)
        self.prepare_data_per_node = False  # the resampling table is written once, to the shared cache
        self.rates: dict[str, float] | None = None
        self.train_set: NodeStream | None = None
        self.val_set: NodeStream | None = None

    def _rates(self) -> dict[str, float]:
        cache = cache_folder(self.plan.subset, self.cfg)
        return resampling_rates(self.plan.scan.brief_counts, self.cfg.resample, cache)

    def _clip_cache(self) -> ClipCache:
        subset = self.plan.subset
        return build_clip_cache(subset.shards, subset.sha256s, cache_folder(subset, self.cfg), self.cfg)

    def prepare_data(self) -> None:
        # global rank 0 computes and caches these; the others load them in setup
        if self.cfg.resample.enabled:
            self._rates()
        if self.cfg.clip_cache:
            self._clip_cache()

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        readers = world * max(1, self.cfg.num_workers)
        shards = [str(path) for path in self.plan.subset.shards]
        if len(shards) < readers:
            raise ConfigError(
                f"data.scale={self.cfg.scale:g} gives {len(shards)} shards for {world} ranks x "
                f"{max(1, self.cfg.num_workers)} workers = {readers} readers, which would read "
                f"the same shards in step; use fewer data.num_workers, a larger scale, or "
                f"build with fewer samples_per_shard"
            )
        if self.cfg.resample.enabled and self.rates is None:
            self.rates = self._rates()
        clips = self._clip_cache() if self.cfg.clip_cache else None
        self.train_set = NodeStream(
            shards,
            self.cfg,
            self.plan.mix,
            self.rates,
            rank,
            self.cfg.epoch_batches,
            seed=self.cfg.seed,
            clips=clips,
        )
        if self.cfg.val_shards:
            val = select_scale(self.cfg.val_shards, 1.0)
            self.val_set = NodeStream(
                [str(p) for p in val.shards],
                self.cfg,
                self.plan.mix,
                None,
                rank,
                self.cfg.val_batches,
                seed=f"val:{self.cfg.seed}",
                repeat=True,
            )

    def _trained_batches(self) -> int:
        trainer = self.trainer
        return trainer.global_step * trainer.accumulate_grad_batches if trainer else 0

    def train_dataloader(self) -> StreamLoader:
        return StreamLoader(self.train_set, self._trained_batches, self.cfg.num_workers)

    def val_dataloader(self) -> StreamLoader | list:
        if self.val_set is None:
            return []
        return StreamLoader(self.val_set, lambda: 0, self.cfg.num_workers)
