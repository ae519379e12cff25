"""`run_training(cfg)`: one VL-JEPA training run at one data scale, as train.py runs it.

A run's identity is every config value that changes what it trains (`run_identity`): the model, the
optimiser, the data (the chosen shards' content, filters, text fields, scale, budget, frames, crop),
the seeds, the global batch and the precision; not where it writes, logs or runs, nor how fast it
loads. The run lives in <output_dir>/<run name>/, a readable name ending in the identity's hash
(experiment, model preset, scale, shards, samples, hash), so the same command always finds the same
run and a changed seed or learning rate is another run. `ckpt_path=last` resumes it from its newest
checkpoint (last.ckpt, a periodic one or the SLURM requeue checkpoint), with the global step,
samples seen, optimizer state and W&B run id; a checkpoint of another identity is refused, naming
the keys that differ.

    <run>/checkpoints/step-0000500.ckpt  the newest `checkpoint.keep_last` periodic ones
    <run>/checkpoints/best-step-0000400.ckpt  the best by `checkpoint.monitor` (a val/, train/ or, with
                             `zero_shot.benchmark` scored during training, zero_shot/ metric)
    <run>/checkpoints/last.ckpt, config.yaml (the resolved config)
    <run>/hpc_ckpt_N.ckpt    saved at the step boundary after SLURM's time-limit signal (USR1) or a
                             SIGTERM, before the job requeues or stops (action100m.train.requeue; the
                             one a run resumed from is kept, older ones removed)
    <run>/wandb/, <run>/csv/  the loggers
    <run>/run.json           the summary of the latest (possibly resumed) fit
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import uuid
import warnings
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from action100m.errors import ConfigError
from action100m.models.checkpoint import check_compatible, read_checkpoint
from action100m.models.vljepa import VLJEPA
from action100m.train.config import TrainConfig
from action100m.train.data.module import ActionDataModule, DataPlan, plan_data
from action100m.train.requeue import SlurmRequeue
from action100m.train.zero_shot import BestCheckpoint, ZeroShotSet, ZeroShotValidation, load_zero_shot
from action100m.utils.atomic import atomic_path, write_json_atomic, write_text_atomic

# Lightning warnings about what this setup does on purpose.
EXPECTED_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",  # the frozen encoders stay in eval mode
    r"Your `IterableDataset` has `__len__` defined",  # the stream's length is exact, per rank and worker
    r"Checkpoint directory .* exists and is not empty",  # a resumed run writes into its own folder
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed into place: a crash never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def as_train_config(cfg: TrainConfig | DictConfig) -> TrainConfig:
    return cfg if isinstance(cfg, TrainConfig) else OmegaConf.to_object(cfg)


# Config keys that never change the trained weights: where a run writes and logs, how it is
# checkpointed, the hardware it runs on and how fast it loads. `data.num_workers`, `shuffle_buffer` and
# `epoch_batches` reorder the same samples (as the world size does); `data.shards` is replaced by the
# content of the chosen shards, so a shard set copied elsewhere (node-local scratch) is the same data.
# `zero_shot` scores the model without changing it (nor the random state training draws from).
NOT_IDENTITY = {
    "name",
    "output_dir",
    "ckpt_path",
    "logger",
    "checkpoint",
    "zero_shot",
    "data.shards",
    "data.num_workers",
    "data.epoch_batches",
    "data.shuffle_buffer",
    "data.video_backend",
    "data.decode_threads",
    "data.max_consecutive_failures",
    "data.val_shards",
    "data.val_batches",
    "data.cache_dir",
    "data.resample.batch_size",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.val_check_interval",
    "trainer.log_every_n_steps",
    "trainer.deterministic",
    "trainer.threads",
    "trainer.requeue",
    "trainer.progress_bar",
}
# With a fixed global batch the layout only decides the accumulation; without one it is the batch.
LAYOUT = ("data.batch_size", "trainer.devices", "trainer.num_nodes", "trainer.accumulate_grad_batches")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value.value if isinstance(value, Enum) else value
    return flat


def _shards_digest(plan: DataPlan) -> str:
    """The chosen shards by name and content (the sha256 their markers record), in the scale's order."""
    digest = hashlib.sha256()
    for path, sha in zip(plan.subset.shards, plan.subset.sha256s, strict=True):
        digest.update(f"{path.name}:{sha}\n".encode())
    return f"{len(plan.subset.shards)} shards, sha256 {digest.hexdigest()[:16]}"


def run_identity(cfg: TrainConfig, plan: DataPlan) -> dict[str, Any]:
    """Every config value that changes the trained weights, flat (`optim.lr`: 5e-05, ...)."""
    flat = _flatten(asdict(cfg))
    dropped = set(LAYOUT) if cfg.trainer.global_batch_size is not None else {"trainer.global_batch_size"}
    if cfg.data.samples_seen:
        dropped.add("trainer.max_steps")  # the budget in samples sets the steps
    identity = {
        key: value
        for key, value in flat.items()
        if key not in dropped and not any(key == k or key.startswith(f"{k}.") for k in NOT_IDENTITY)
    }
    if cfg.trainer.global_batch_size is None and identity["trainer.accumulate_grad_batches"] is None:
        identity["trainer.accumulate_grad_batches"] = 1
    identity["data.shards"] = _shards_digest(plan)
    return dict(sorted(identity.items()))


def identity_hash(identity: dict[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_name(cfg: TrainConfig, plan: DataPlan, identity: dict[str, Any] | None = None) -> str:
    """Readable (experiment, preset, scale, shards, samples, budget), ending in the identity's hash."""
    subset = plan.subset
    name = f"{cfg.name}-{cfg.model.preset}-scale{subset.scale:g}-{len(subset.shards)}shards-{plan.scan.samples}samples"
    name += f"-{cfg.data.samples_seen}seen" if cfg.data.samples_seen else ""
    return f"{name}-{identity_hash(identity or run_identity(cfg, plan))}"


def check_identity(meta: dict[str, Any], identity: dict[str, Any], where: str) -> None:
    """A `ConfigError` naming the keys that differ unless the checkpoint was saved by this run."""
    theirs = meta.get("identity")
    if not isinstance(theirs, dict):
        raise ConfigError(
            f"{where}: records no run identity (saved before runs had one), so it cannot be "
            f"resumed as this run"
        )
    absent = "(unset)"
    differ = [
        key
        for key in sorted(set(theirs) | set(identity))
        if theirs.get(key, absent) != identity.get(key, absent)
    ]
    if differ:
        shown = "; ".join(
            f"{key}: {theirs.get(key, absent)!r} there, {identity.get(key, absent)!r} here"
            for key in differ[:4]
        )
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(
            f"{where}: saved by another run ({shown}{more}); a checkpoint resumes only the run "
            f"it was saved by"
        )


@dataclass(frozen=True)
class BatchPlan:
    per_device: int  # data.batch_size
    world_size: int
    accumulation: int

    @property
    def micro_batch(self) -> int:
        """What InfoNCE contrasts: the rows of one forward pass over all ranks."""
        return self.per_device * self.world_size

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.accumulation


def batch_plan(cfg: TrainConfig, world_size: int) -> BatchPlan:
    """The accumulation that meets `trainer.global_batch_size` with this world size, or a `ConfigError`
    naming the keys that cannot."""
    t, per_device = cfg.trainer, cfg.data.batch_size
    layout = f"data.batch_size={per_device} x world size {world_size} (trainer.devices x trainer.num_nodes)"
    for key in ("accumulate_grad_batches", "global_batch_size"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            raise ConfigError(f"trainer.{key}={getattr(t, key)} must be at least 1 (or null)")
    if t.global_batch_size is None:
        accumulation = t.accumulate_grad_batches or 1
    else:
        per_step = per_device * world_size
        if t.global_batch_size % per_step:
            hint = (
                f"data.batch_size must divide {t.global_batch_size // world_size}"
                if t.global_batch_size % world_size == 0
                else f"world size {world_size} does not divide it"
            )
            raise ConfigError(
                f"trainer.global_batch_size={t.global_batch_size} is not a multiple of {layout} "
                f"= {per_step}: {hint}"
            )
        accumulation = t.global_batch_size // per_step
        if t.accumulate_grad_batches not in (None, accumulation):
            raise ConfigError(
                f"trainer.accumulate_grad_batches={t.accumulate_grad_batches} contradicts "
                f"trainer.global_batch_size={t.global_batch_size} with {layout}, which needs "
                f"{accumulation}; leave it null"
            )
    if cfg.data.epoch_batches % accumulation:
        raise ConfigError(
            f"data.epoch_batches={cfg.data.epoch_batches} must be a multiple of the accumulation "
            f"{accumulation} (trainer.global_batch_size / ({layout}), or "
            f"trainer.accumulate_grad_batches): an epoch holds whole optimizer steps"
        )
    return BatchPlan(per_device, world_size, accumulation)


def checkpoint_size(model: L.LightningModule) -> dict[str, int]:
    """Parameters, trainable parameters and the bytes of one full checkpoint: the state dict as stored
    plus AdamW's two moments per trainable parameter, in the parameter's dtype."""
    tensors = {t.data_ptr(): t for t in model.state_dict().values()}  # tied weights are saved once
    trainable = [p for p in model.parameters() if p.requires_grad]
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in trainable),
        "bytes": sum(t.numel() * t.element_size() for t in tensors.values())
        + 2 * sum(p.numel() * p.element_size() for p in trainable),
    }


def retention(cfg: TrainConfig) -> str:
    c = cfg.checkpoint
    periodic = "every periodic one" if c.keep_last < 0 else f"the newest {c.keep_last}"
    if c.monitor is None:
        best = "no best"
    elif _best_monitor(cfg) is None:
        best = f"no best by {c.monitor} (no validation: data.val_shards is unset)"
    elif c.monitor.startswith("zero_shot/"):
        z = cfg.zero_shot
        best = f"the best by {c.monitor} ({c.mode}, scored every {z.every_n_steps} steps and at the last)"
    else:
        best = f"the best by {c.monitor} ({c.mode})"
    return f"every {c.every_n_steps} steps, keeping {periodic}, {best} and last.ckpt"


def effective_settings(cfg: TrainConfig, batch: BatchPlan, max_steps: int, size: dict[str, int]) -> str:
    """What the run will do, resolved: the start-up lines of every run."""
    budget = f"data.samples_seen={cfg.data.samples_seen:,}" if cfg.data.samples_seen else "trainer.max_steps"
    return (
        f"train: global batch {batch.global_batch:,} = {batch.per_device} per device x {batch.world_size} ranks "
        f"x {batch.accumulation} accumulated (InfoNCE contrasts {batch.micro_batch:,} per micro-batch); "
        f"{max_steps:,} steps for {budget}\n"
        f"train: checkpoints of ~{size['bytes'] / 1e9:.2f} GB ({size['parameters'] / 1e6:,.1f}M parameters, "
        f"{size['trainable'] / 1e6:,.1f}M trainable with AdamW state) {retention(cfg)}"
    )


def wandb_settings(cfg: TrainConfig, plan: DataPlan, name: str) -> dict[str, Any]:
    """The W&B run: mode, name, tags (scale, shards, samples, preset) and config (with the data plan)."""
    mode = cfg.logger.mode
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    if mode not in ("online", "offline"):
        raise ConfigError(f"logger.mode: {cfg.logger.mode!r} is not auto, online or offline")
    described = plan.describe()
    tags = [
        f"scale:{described['scale']:g}",
        f"shards:{described['shards']}",
        f"samples:{described['samples']}",
        f"model:{cfg.model.preset}",
        *cfg.logger.tags,
    ]
    config = {**asdict(cfg), "data_plan": described}
    return {
        "name": name,
        "project": cfg.logger.project,
        "entity": cfg.logger.entity,
        "tags": tags,
        "mode": mode,
        "config": config,
    }


def resume_path(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """ "last": the newest of the run's last.ckpt, periodic and SLURM requeue checkpoints (None before the
    first); a path: that checkpoint. Periodic ones count because Lightning writes step-N.ckpt before
    last.ckpt: a kill between the two leaves step N only there."""
    if not ckpt_path:
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise ConfigError(f"ckpt_path: {ckpt_path}: no such checkpoint")
        return Path(ckpt_path)
    candidates = [
        run_dir / "checkpoints" / "last.ckpt",
        *(run_dir / "checkpoints").glob("step-*.ckpt"),
        *run_dir.glob("hpc_ckpt_*.ckpt"),
    ]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime_ns) if existing else None


# Metrics VLJEPA logs that a best checkpoint can be chosen by.
MONITORED = ("loss", "video_to_text_top1")


def _check(cfg: TrainConfig, zero_shot: ZeroShotSet | None) -> None:
    for key in ("num_frames", "crop_size"):
        if getattr(cfg.data, key) != getattr(cfg.model, key):
            raise ConfigError(
                f"data.{key}={getattr(cfg.data, key)} differs from model.{key}={getattr(cfg.model, key)}"
            )
    if zero_shot and cfg.trainer.strategy == "fsdp":
        raise ConfigError(
            "zero_shot.benchmark does not run with trainer.strategy=fsdp: it calls the model outside "
            "FSDP's wrapper, where the parameters are sharded (use ddp)"
        )
    c = cfg.checkpoint
    known = [f"{split}/{metric}" for split in ("val", "train") for metric in MONITORED]
    known += (
        zero_shot.metric_keys if zero_shot else ["zero_shot/<benchmark>/<metric> with zero_shot.benchmark"]
    )
    if c.monitor is not None and c.monitor not in known:
        raise ConfigError(f"checkpoint.monitor={c.monitor!r} is not one of {', '.join(known)} (or null)")
    if c.mode not in ("min", "max"):
        raise ConfigError(f"checkpoint.mode={c.mode!r} is not min or max")
    if c.every_n_steps < 1:
        raise ConfigError(f"checkpoint.every_n_steps={c.every_n_steps} must be at least 1")


def _best_monitor(cfg: TrainConfig) -> str | None:
    """The metric the best checkpoint is kept by: any that is logged (val/ ones need data.val_shards;
    `_check` has made sure that a zero_shot/ one is what the configured benchmark logs)."""
    monitor = cfg.checkpoint.monitor
    return None if monitor is None or (monitor.startswith("val/") and not cfg.data.val_shards) else monitor


def _strategy(cfg: TrainConfig, model: VLJEPA) -> Any:
    if cfg.trainer.strategy != "fsdp":
        return cfg.trainer.strategy
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    # Shard per transformer block; original parameters keep the frozen/trainable split and the groups.
    blocks = {type(model.predictor.lm.layers[0]), type(model.x_encoder.encoder.layer[0])}
    return FSDPStrategy(auto_wrap_policy=ModuleWrapPolicy(blocks), use_orig_params=True)


def _loggers(cfg: TrainConfig, plan: DataPlan, name: str, run_dir: Path, run_id: str) -> list[Logger]:
    loggers: list[Logger] = []
    if cfg.logger.wandb:
        settings = wandb_settings(cfg, plan, name)
        offline = settings.pop("mode") == "offline"
        loggers.append(
            WandbLogger(save_dir=str(run_dir), id=run_id, resume="allow", offline=offline, **settings)
        )
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv"))
    return loggers


def build_trainer(
    cfg: TrainConfig,
    model: VLJEPA,
    loggers: list[Logger],
    run_dir: Path,
    zero_shot: ZeroShotValidation | None = None,
) -> L.Trainer:
    t, c = cfg.trainer, cfg.checkpoint
    # The newest K by step (monitor "step", max); -1 keeps all (no monitor); last.ckpt always.
    periodic = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="step-{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=c.every_n_steps,
        save_last=True,
        save_top_k=c.keep_last,
        monitor="step" if c.keep_last >= 0 else None,
        mode="max",
    )
    callbacks: list[Any] = [periodic, *([zero_shot] if zero_shot else [])]
    monitor = _best_monitor(cfg)
    if monitor is not None:
        best = {
            "dirpath": run_dir / "checkpoints",
            "filename": "best-step-{step:07d}",
            "auto_insert_metric_name": False,
            "monitor": monitor,
            "mode": c.mode,
            "save_top_k": 1,
        }
        # saved whenever the metric is new: after each zero-shot scoring, validation (or epoch)
        is_zero_shot = zero_shot is not None and monitor.startswith("zero_shot/")
        callbacks.append(BestCheckpoint(zero_shot, **best) if is_zero_shot else ModelCheckpoint(**best))
    callbacks += [LearningRateMonitor(logging_interval="step")] if loggers else []
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        # Lightning forms the DDP group from SLURM's variables, but its signal handlers run collectives
        # wherever the signal lands (a deadlock): SlurmRequeue acts on USR1 and SIGTERM at a step boundary.
        plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks.append(SlurmRequeue(requeue=t.requeue))
    validate = bool(cfg.data.val_shards)
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(cfg, model),
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=-1,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=t.val_check_interval if validate else None,
        check_val_every_n_epoch=None if validate and t.val_check_interval else 1,
        limit_val_batches=None if validate else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=plugins,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
    )


def _prune_requeue_checkpoints(run_dir: Path, resume: Path) -> None:
    """Every requeue writes a new hpc_ckpt_N.ckpt and none removes one: once a run has resumed from the
    newest of its checkpoints, the older requeue ones are dead weight (~12 GB each)."""
    for path in run_dir.glob("hpc_ckpt_*.ckpt"):
        if path.resolve() != resume.resolve():
            path.unlink(missing_ok=True)


def _remove_stale_temps(run_dir: Path) -> None:
    """Temp files of checkpoint saves a kill interrupted (the run's one writer is not running yet)."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for path in folder.glob(".*.ckpt.*.tmp"):
            path.unlink(missing_ok=True)


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """The checkpoint kept by `checkpoint.monitor` (the callback whose file name starts "best-")."""
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):  # SlurmRequeue is a Checkpoint too
            continue
        if callback.filename and callback.filename.startswith("best-") and callback.best_model_path:
            return callback.best_model_path
    return None


def run_training(cfg: TrainConfig | DictConfig) -> dict[str, Any]:
    """Train one run; returns its summary (also written to <run>/run.json)."""
    cfg = as_train_config(cfg)
    z, zero_shot = cfg.zero_shot, load_zero_shot(cfg.zero_shot)
    _check(cfg, zero_shot)
    plan = plan_data(cfg.data)
    identity = run_identity(cfg, plan)
    name = run_name(cfg, plan, identity)
    run_dir = Path(cfg.output_dir) / name
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = VLJEPA(cfg.model, cfg.optim)
    model.identity = identity
    resume = resume_path(cfg.ckpt_path, run_dir)
    if resume is not None:
        meta = check_compatible(read_checkpoint(resume), model, f"checkpoint {resume}")
        check_identity(meta, identity, f"ckpt_path={cfg.ckpt_path}: checkpoint {resume}")
        model.run_id = meta["wandb_run_id"]
    model.run_id = model.run_id or uuid.uuid4().hex[:12]
    scorer = (
        ZeroShotValidation(z, zero_shot, cfg.data.video_backend.value, cfg.data.decode_threads)
        if zero_shot
        else None
    )
    trainer = build_trainer(cfg, model, _loggers(cfg, plan, name, run_dir, model.run_id), run_dir, scorer)
    batch = batch_plan(cfg, trainer.world_size)  # the world size is known once the trainer is
    trainer.accumulate_grad_batches = batch.accumulation
    if cfg.data.samples_seen:
        trainer.fit_loop.epoch_loop.max_steps = math.ceil(cfg.data.samples_seen / batch.global_batch)
    described = plan.describe()
    model.training_data = {
        **{k: described[k] for k in ("scale", "shards", "total_shards", "videos", "samples")},
        "seed": cfg.seed,
        "run": name,
    }
    if trainer.is_global_zero:
        _remove_stale_temps(run_dir)
        write_text_atomic(
            run_dir / "checkpoints" / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg))
        )
        if resume is not None:
            _prune_requeue_checkpoints(run_dir, resume)
        print(
            f"train: run {name}: {described['shards']} of {described['total_shards']} shards, "
            f"{described['videos']} videos, {described['samples']} samples"
            + (f"; resuming from {resume}" if resume else ""),
            file=sys.stderr,
        )
        print(effective_settings(cfg, batch, trainer.max_steps, checkpoint_size(model)), file=sys.stderr)
        if zero_shot:
            print(
                f"train: zero-shot validation on {zero_shot.name} ({zero_shot.bench.root}): "
                f"{len(zero_shot.clips)} of its {zero_shot.clips_read} clips (zero_shot.seed={z.seed}) "
                f"every {z.every_n_steps} steps and at the last, logged as {', '.join(zero_shot.metric_keys)}",
                file=sys.stderr,
            )
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(model, datamodule=ActionDataModule(cfg.data, plan), ckpt_path=resume, weights_only=True)
    if trainer.global_step % cfg.checkpoint.every_n_steps:  # the final step, when it was not a periodic save
        # a full checkpoint (optimizer state included): weights_only here means what is saved
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        wandb.finish()  # otherwise the next run of a multirun sweep logs into this run
    summary = {
        "run_name": name,
        "run_dir": str(run_dir),
        "identity": identity,
        "global_step": trainer.global_step,
        "global_batch": batch.global_batch,
        "accumulation": batch.accumulation,
        "world_size": batch.world_size,
        "samples_seen": model.samples_seen,
        "skipped_samples": model.skipped_samples,
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "best_checkpoint": _best_checkpoint(trainer),
        "resumed_from": str(resume) if resume else None,
        "wandb_run_id": model.run_id,
        "data": described,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        "zero_shot": scorer.report() if scorer else None,
    }
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "run.json", summary)
    return summary
