"""Zero-shot validation during training: one benchmark (`zero_shot.benchmark`, a
configs/zero_shot/<name>.yaml) scored every `zero_shot.every_n_steps` optimizer steps and at the last
step, so that a run measures what it is for while it trains and `checkpoint.monitor` can keep the best
checkpoint by a downstream score rather than by the loss.

The benchmark is read at start-up (a wrong name, folder or video fails before training). A fixed subset
of `max_clips` clips (videos, for retrieval), chosen once by `seed`, is scored every time; it is decoded
and preprocessed at the first scoring and kept in memory. The texts go through the model every time,
since the Y-encoder's head trains; a frozen sentence encoder's outputs come from `YEncoder`'s cache, so
after the first scoring only the head runs on them.

Metrics are `zero_shot/<benchmark>/<metric>`: top1, top5 (above 5 classes) and mean_class, or for
retrieval t2v_r1, v2t_r1, ... (action100m/eval/metrics.py). They are written to the loggers at
step = the optimizer steps done (the N of best-step-N.ckpt): the row whose train/loss the same weights
computed.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from action100m.config import CONFIG_DIR
from action100m.errors import Action100MError, ConfigError
from action100m.eval.benchmarks import Benchmark, Clip, RetrievalSet
from action100m.eval.classifier import class_embeddings, clip_embeddings, text_embeddings
from action100m.eval.config import BenchmarkConfig, EvalConfig
from action100m.eval.data import ClipDataset, Sample
from action100m.eval.errors import EvalError
from action100m.eval.metrics import classification_metrics, retrieval_metrics
from action100m.eval.prompts import template_set
from action100m.eval.run import load_benchmark, suite_configs
from action100m.train.config import ZeroShotValidationConfig

RETRIEVAL_METRICS = tuple(
    f"{direction}_{metric}"
    for direction in ("t2v", "v2t")
    for metric in ("r1", "r5", "r10", "median_rank", "mean_rank")
)
TEXT_BATCH = 256  # texts per Y-encoder call, as eval.py's text_batch_size


@dataclass
class ZeroShotSet:
    """A benchmark as validation scores it: its config and its data cut to the chosen subset."""

    name: str  # zero_shot.benchmark: the metrics' prefix
    bench: BenchmarkConfig
    data: Benchmark | RetrievalSet
    clips_read: int  # clips (videos, for retrieval) the benchmark has, of which `data` keeps the subset

    @property
    def clips(self) -> list[Clip]:
        return self.data.clips if isinstance(self.data, Benchmark) else self.data.videos

    @property
    def metric_keys(self) -> list[str]:
        """What every scoring logs (and `checkpoint.monitor` can name)."""
        if isinstance(self.data, Benchmark):
            names = ["top1", *(["top5"] if len(self.data.class_names) > 5 else []), "mean_class"]
        else:
            names = list(RETRIEVAL_METRICS)
        return [f"zero_shot/{self.name}/{metric}" for metric in names]


def _subset(data: Benchmark | RetrievalSet, chosen: list[int]) -> Benchmark | RetrievalSet:
    if isinstance(data, Benchmark):
        return replace(data, clips=[data.clips[i] for i in chosen])
    captions, caption_video = data.captions_of(chosen)
    return replace(
        data, videos=[data.videos[i] for i in chosen], captions=captions, caption_video=caption_video
    )


def load_zero_shot(cfg: ZeroShotValidationConfig) -> ZeroShotSet | None:
    """The benchmark `cfg.benchmark` cut to its subset (None: off), or a one-line `ConfigError` naming the
    key whose value names something that does not exist (the benchmark, its folder, files or videos)."""
    if not cfg.benchmark:
        if cfg.root:
            raise ConfigError(f"zero_shot.root={cfg.root} is set, but zero_shot.benchmark is null: name one")
        return None
    for key in ("every_n_steps", "max_clips", "batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"zero_shot.{key}={getattr(cfg, key)} must be at least 1")
    if cfg.num_frames is not None and cfg.num_frames < 1:
        raise ConfigError(f"zero_shot.num_frames={cfg.num_frames} must be at least 1 (or null)")
    name = cfg.benchmark
    path = CONFIG_DIR / "zero_shot" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(f"zero_shot.benchmark={name!r}: there is no {path} (one of {known})")
    [bench] = suite_configs(EvalConfig(zero_shot=BenchmarkConfig(suite=[name])))
    if bench.suite:
        raise ConfigError(f"zero_shot.benchmark={name!r} is a suite of {len(bench.suite)}: name one of them")
    key = (
        f"zero_shot.root={cfg.root}" if cfg.root else f"zero_shot.root (null: {name}'s default {bench.root})"
    )
    bench.root = cfg.root or bench.root
    if not Path(bench.root).expanduser().is_dir():
        raise ConfigError(f"{key}: no such folder")
    try:
        loaded = load_benchmark(bench)
    except Action100MError as err:
        raise ConfigError(f"zero_shot.benchmark={name} in {key}: {err}") from None
    clips = loaded.clips
    if not clips:
        raise ConfigError(f"zero_shot.benchmark={name} in {key}: no clips for split {loaded.data.split!r}")
    chosen = sorted(random.Random(cfg.seed).sample(range(len(clips)), min(cfg.max_clips, len(clips))))
    missing = {id(clip) for clip in loaded.missing}
    absent = [clips[i] for i in chosen if id(clips[i]) in missing]
    if absent:
        raise ConfigError(
            f"zero_shot.benchmark={name} in {key}: {len(absent)} of the {len(chosen)} chosen clips "
            f"reference missing videos (e.g. {absent[0].video})"
        )
    return ZeroShotSet(name, bench, _subset(loaded.data, chosen), len(clips))


class ZeroShotValidation(L.Callback):
    """Scores `zero_shot` every `cfg.every_n_steps` optimizer steps and at the last; logs its metrics
    and keeps its own seconds (`report()`)."""

    def __init__(self, cfg: ZeroShotValidationConfig, zero_shot: ZeroShotSet, backend: str, threads: int):
        self.cfg, self.benchmark = cfg, zero_shot
        self.backend, self.video_options = backend, {"num_threads": threads}
        self.dataset: ClipDataset | None = None
        self.samples: list[Sample] | None = None  # the decoded subset, from the first scoring on
        self.decode_seconds = 0.0
        self.scorings: list[dict[str, Any]] = []  # {step, seconds, metrics} of this fit
        self.scored_step: int | None = None  # the step just scored, which `BestCheckpoint` weighs
        self.train_seconds: float | None = None
        self._started = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # With gradient accumulation the batches between two optimizer steps share one global step.
        if step == 0 or step == self.scored_step:
            return
        last = 0 < trainer.max_steps <= step
        if step % self.cfg.every_n_steps and not last:
            return
        self._decoded(pl_module)  # the first time: decoded, its seconds kept apart in decode_seconds
        started = time.perf_counter()
        metrics = self.score(trainer, pl_module)
        values = {
            f"zero_shot/{self.benchmark.name}/{k}": float(v) for k, v in metrics.items() if v is not None
        }
        # Every rank scores the same subset; rank 0's numbers go to all, so that the logged value and the
        # best-checkpoint decision are the same on every rank, to the last bit.
        values = trainer.strategy.broadcast(values, src=0)
        # callback_metrics only (for ModelCheckpoint and run.json): a value logged through Lightning's
        # loggers at one step is logged again at every later logging step of the epoch, stale.
        for key, value in values.items():
            pl_module.log(key, value, on_step=True, on_epoch=False, logger=False)
        for logger in trainer.loggers:  # rank-zero-only, as Lightning's own calls
            logger.log_metrics({**values, "epoch": trainer.current_epoch}, step=step)
        self.scored_step = step
        seconds = round(time.perf_counter() - started, 3)
        self.scorings.append({"step": step, "seconds": seconds, "metrics": values})

    def score(self, trainer: L.Trainer, model: L.LightningModule) -> dict[str, float | None]:
        """The benchmark's metrics for the model as it is now: in eval mode, without gradients, at the
        training's precision; each module's train/eval mode is restored after."""
        samples = self._decoded(model)
        modes = {module: module.training for module in model.modules()}
        model.eval()
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                return self._metrics(model, samples)
        finally:
            # one by one, as Lightning restores them after validation: a module training keeps in eval
            # mode (a frozen encoder) stays there
            for module, training in modes.items():
                module.training = training

    def _decoded(self, model: Any) -> list[Sample]:
        if self.samples is None:
            started = time.perf_counter()
            bench = self.benchmark.bench
            self.dataset = ClipDataset(
                self.benchmark.clips,
                model.preprocess,
                self.cfg.num_frames or bench.num_frames or model.num_frames,
                bench.temporal_views,
                bench.spatial_crops,
                self.backend,
                self.video_options,
            )
            # In this process, without DataLoader workers forked from the training process; nothing here
            # draws from torch's random state, so training goes on as it would without validation.
            samples = [self.dataset[i] for i in range(len(self.dataset))]
            failed = [s for s in samples if s.views is None]
            if len(failed) == len(samples):
                raise EvalError(f"zero-shot validation: no clip of {self.benchmark.name} could be decoded")
            if failed:
                clip = self.benchmark.clips[failed[0].index]
                rank_zero_warn(
                    f"zero-shot validation: {len(failed)} of {len(samples)} clips of {self.benchmark.name} could "
                    f"not be decoded (e.g. {clip.video}: {failed[0].error}); scored without them"
                )
            self.samples = samples
            self.decode_seconds = time.perf_counter() - started
        return self.samples

    def _metrics(self, model: Any, samples: list[Sample]) -> dict[str, float | None]:
        data = self.benchmark.data
        embedded = clip_embeddings(model, self.dataset, self.cfg.batch_size, 0, False, decoded=samples)
        videos = embedded.embeddings
        if isinstance(data, Benchmark):
            templates = template_set(self.benchmark.bench.templates, self.benchmark.bench.template_list)
            classes, _ = class_embeddings(model, data.class_texts, templates, TEXT_BATCH)
            targets = torch.tensor([data.clips[i].label for i in embedded.indices], dtype=torch.long)
            return classification_metrics(videos @ classes.T, targets)
        texts, rows = data.captions_of(embedded.indices)
        captions = text_embeddings(model, texts, TEXT_BATCH)
        return retrieval_metrics(captions @ videos.T, torch.tensor(rows))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_seconds = time.perf_counter() - self._started
        if trainer.is_global_zero:
            print(f"train: {self.cost()}", file=sys.stderr)

    def seconds(self) -> float:
        """Decoding once plus every scoring of this fit."""
        return self.decode_seconds + sum(s["seconds"] for s in self.scorings)

    def cost(self) -> str:
        """E.g. "zero-shot validation: 41.2 s of 300.5 s training (synth_validation, 135 clips, decoded
        once in 9.0 s, then 4 scorings of 8.1 s)"."""
        each = sum(s["seconds"] for s in self.scorings) / max(1, len(self.scorings))
        return (
            f"zero-shot validation: {self.seconds():.1f} s of {self.train_seconds or 0.0:.1f} s training "
            f"({self.benchmark.name}, {len(self.benchmark.clips)} clips, decoded once in {self.decode_seconds:.1f} s, "
            f"then {len(self.scorings)} scorings of {each:.1f} s)"
        )

    def report(self) -> dict[str, Any]:
        """What run.json records: the benchmark, the subset, the seconds and every scoring."""
        return {
            "benchmark": self.benchmark.name,
            "root": self.benchmark.bench.root,
            "clips": len(self.benchmark.clips),
            "clips_read": self.benchmark.clips_read,
            "seconds": round(self.seconds(), 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "train_seconds": None if self.train_seconds is None else round(self.train_seconds, 3),
            "scorings": self.scorings,
        }


class BestCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` by a zero-shot metric, weighed right after each scoring: the last step's too,
    which is off every period when max_steps is not a multiple of `every_n_steps` (Lightning's own
    triggers are periods of steps, epochs or time)."""

    def __init__(self, scorer: ZeroShotValidation, **kwargs: Any) -> None:
        super().__init__(every_n_epochs=0, **kwargs)  # no period of its own
        self.scorer = scorer

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Lightning runs checkpoint callbacks after all others: the scorer has logged this step's metrics.
        if self.scorer.scored_step == trainer.global_step and not self._should_skip_saving_checkpoint(
            trainer
        ):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
