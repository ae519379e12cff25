"""`run_training(cfg)`: one VL-JEPA training run at one data scale, as train.py runs it.

A run lives in <output_dir>/<run name>/, and the run name is made from the config and the data
(experiment, model preset, scale, shards, samples), so the same command always finds the same run:
`ckpt_path=last` resumes it from its newest checkpoint (ModelCheckpoint's last.ckpt or the SLURM
requeue checkpoint), with the global step, samples seen, optimizer state and W&B run id.

    <run>/checkpoints/step-0000500.ckpt, last.ckpt, config.yaml (the resolved config)
    <run>/hpc_ckpt_N.ckpt    written by Lightning on SLURM's time-limit signal before it requeues
    <run>/wandb/, <run>/csv/  the loggers
    <run>/run.json           the summary of the latest (possibly resumed) fit
"""

from __future__ import annotations

import math
import os
import sys
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from action100m.data.module import ActionDataModule, DataPlan, plan_data
from action100m.errors import ConfigError
from action100m.models.checkpoint import check_compatible, read_checkpoint
from action100m.models.vljepa import VLJEPA
from action100m.train_config import TrainConfig
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


def run_name(cfg: TrainConfig, plan: DataPlan) -> str:
    subset = plan.subset
    name = f"{cfg.name}-{cfg.model.preset}-scale{subset.scale:g}-{len(subset.shards)}shards-{plan.scan.samples}samples"
    return name + (f"-{cfg.data.samples_seen}seen" if cfg.data.samples_seen else "")


def wandb_settings(cfg: TrainConfig, plan: DataPlan, name: str) -> dict[str, Any]:
    """The W&B run: mode, name, tags (scale, shards, samples, preset) and config (with the data plan)."""
    mode = cfg.logger.mode
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    if mode not in ("online", "offline"):
        raise ConfigError(f"logger.mode: {cfg.logger.mode!r} is not auto, online or offline")
    described = plan.describe()
    tags = [f"scale:{described['scale']:g}", f"shards:{described['shards']}", f"samples:{described['samples']}",
            f"model:{cfg.model.preset}", *cfg.logger.tags]  # fmt: skip
    config = {**asdict(cfg), "data_plan": described}
    return {"name": name, "project": cfg.logger.project, "entity": cfg.logger.entity, "tags": tags,
            "mode": mode, "config": config}  # fmt: skip


def resume_path(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """ "last": the newest of the run's last.ckpt and SLURM requeue checkpoints (None before the first);
    a path: that checkpoint."""
    if not ckpt_path:
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise ConfigError(f"ckpt_path: {ckpt_path}: no such checkpoint")
        return Path(ckpt_path)
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime_ns) if existing else None


def _check(cfg: TrainConfig) -> None:
    for key in ("num_frames", "crop_size"):
        if getattr(cfg.data, key) != getattr(cfg.model, key):
            raise ConfigError(
                f"data.{key}={getattr(cfg.data, key)} differs from model.{key}={getattr(cfg.model, key)}"
            )
    if cfg.data.epoch_batches % cfg.trainer.accumulate_grad_batches:
        raise ConfigError(f"data.epoch_batches={cfg.data.epoch_batches} must be a multiple of "
                          f"trainer.accumulate_grad_batches={cfg.trainer.accumulate_grad_batches}")  # fmt: skip


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


def build_trainer(cfg: TrainConfig, model: VLJEPA, loggers: list[Logger], run_dir: Path) -> L.Trainer:
    t = cfg.trainer
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="step-{step:07d}", auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint.every_n_steps, save_last=True, save_top_k=cfg.checkpoint.keep,
        monitor="step" if cfg.checkpoint.keep > 0 else None, mode="max",
    )  # fmt: skip
    callbacks = [checkpoints] + ([LearningRateMonitor(logging_interval="step")] if loggers else [])
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=t.requeue))
    validate = bool(cfg.data.val_shards)
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=_strategy(cfg, model),
        precision=t.precision, max_steps=t.max_steps, max_epochs=-1,
        accumulate_grad_batches=t.accumulate_grad_batches, gradient_clip_val=t.gradient_clip_val,
        val_check_interval=t.val_check_interval if validate else None,
        check_val_every_n_epoch=None if validate and t.val_check_interval else 1,
        limit_val_batches=None if validate else 0, num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps, deterministic=t.deterministic, logger=loggers or False,
        callbacks=callbacks, plugins=plugins, default_root_dir=str(run_dir), use_distributed_sampler=False,
        enable_progress_bar=t.progress_bar, enable_model_summary=False,
    )  # fmt: skip


def run_training(cfg: TrainConfig | DictConfig) -> dict[str, Any]:
    """Train one run; returns its summary (also written to <run>/run.json)."""
    cfg = as_train_config(cfg)
    _check(cfg)
    plan = plan_data(cfg.data)
    name = run_name(cfg, plan)
    run_dir = Path(cfg.output_dir) / name
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = VLJEPA(cfg.model, cfg.optim)
    resume = resume_path(cfg.ckpt_path, run_dir)
    if resume is not None:
        meta = check_compatible(read_checkpoint(resume), model, f"checkpoint {resume}")
        model.run_id = meta["wandb_run_id"]
    model.run_id = model.run_id or uuid.uuid4().hex[:12]
    trainer = build_trainer(cfg, model, _loggers(cfg, plan, name, run_dir, model.run_id), run_dir)
    if cfg.data.samples_seen:
        per_step = cfg.data.batch_size * trainer.world_size * cfg.trainer.accumulate_grad_batches
        trainer.fit_loop.epoch_loop.max_steps = math.ceil(cfg.data.samples_seen / per_step)
    described = plan.describe()
    model.training_data = {**{k: described[k] for k in ("scale", "shards", "total_shards", "videos", "samples")},
                           "seed": cfg.seed, "run": name}  # fmt: skip
    if trainer.is_global_zero:
        write_text_atomic(
            run_dir / "checkpoints" / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg))
        )
        print(f"train: run {name}: {described['shards']} of {described['total_shards']} shards, "
              f"{described['videos']} videos, {described['samples']} samples; {trainer.max_steps} steps"
              + (f", resuming from {resume}" if resume else ""), file=sys.stderr)  # fmt: skip
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(model, datamodule=ActionDataModule(cfg.data, plan), ckpt_path=resume, weights_only=True)
    if trainer.global_step % cfg.checkpoint.every_n_steps:  # the final step, when it was not a periodic save
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        wandb.finish()  # otherwise the next run of a multirun sweep logs into this run
    summary = {
        "run_name": name, "run_dir": str(run_dir), "global_step": trainer.global_step,
        "samples_seen": model.samples_seen, "skipped_samples": model.skipped_samples,
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"), "resumed_from": str(resume) if resume else None,
        "wandb_run_id": model.run_id, "data": described,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
    }  # fmt: skip
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "run.json", summary)
    return summary
