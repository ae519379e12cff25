"""The training config (`python train.py`): typed schemas registered in Hydra's ConfigStore; the
presets are configs/train.yaml and its groups model/, data/, trainer/, logger/, experiment/."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from action100m.models.config import ModelConfig
from action100m.models.optim import OptimConfig
from action100m.train.data.config import DataConfig


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: Any = "auto"  # per node: a count, a list of ids, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp
    precision: str = "32-true"  # e.g. bf16-mixed on GPUs
    max_steps: int = 1000  # replaced by the samples-seen budget when data.samples_seen is set
    # Samples per optimizer step over all ranks (the paper: 12,288). Set, it is a property of the run:
    # the accumulation is derived from it at start-up as global / (data.batch_size x world size), and
    # numbers that cannot meet it are an error. null: data.batch_size x world x accumulate_grad_batches.
    global_batch_size: int | None = None
    accumulate_grad_batches: int | None = None  # null: derived from global_batch_size (else 1)
    gradient_clip_val: float | None = 1.0
    val_check_interval: int | None = None  # batches between validations (with data.val_shards)
    log_every_n_steps: int = 10
    deterministic: bool = False
    threads: int | None = None  # torch threads of the training process (None: torch's default)
    requeue: bool = True  # on SLURM: checkpoint and requeue on the time-limit signal
    progress_bar: bool = True


@dataclass
class CheckpointConfig:
    every_n_steps: int = 500
    keep_last: int = 2  # periodic checkpoints kept, the newest K (-1: all); last.ckpt always
    # Also kept: the best checkpoint by this metric (val/... only when validation runs; null: none), e.g.
    # zero_shot/<zero_shot.benchmark>/top1 with mode max: the downstream score, which the best loss
    # need not predict
    monitor: str | None = "val/loss"
    mode: str = "min"  # min | max: which value of `monitor` is best


@dataclass
class ZeroShotValidationConfig:
    """A zero-shot benchmark scored during training (action100m/train/zero_shot.py); off by default."""

    benchmark: str | None = None  # a configs/zero_shot/<name>.yaml, e.g. synth_validation or captions
    root: str | None = None  # its folder (null: the benchmark config's default under data/)
    every_n_steps: int = 200  # optimizer steps between scorings; the last step is scored as well
    # A fixed subset (of the videos, for retrieval), chosen once by `seed`: the same clips every time.
    # Decoded once and kept in memory as float clips, max_clips x frames x 3 x crop² x 4 bytes per rank
    # (256 of the demo's 4 x 64²: 50 MB; of a 16 x 256² preset: 3.2 GB).
    max_clips: int = 256
    seed: int = 0
    batch_size: int = 16  # clips per forward pass
    num_frames: int | None = None  # null: the benchmark config's, else the model's


@dataclass
class LoggerConfig:
    wandb: bool = True
    mode: str = "auto"  # auto: online with WANDB_API_KEY set, else offline | online | offline
    project: str = "action100m"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    csv: bool = True  # metrics.csv in the run folder as well


@dataclass
class TrainConfig:
    name: str = "train"  # the experiment; the first part of every run name
    output_dir: str = "runs/train"  # runs go to <output_dir>/<run name>/
    seed: int = 0
    ckpt_path: str | None = None  # "last" resumes the run from its newest checkpoint; or a path
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    zero_shot: ZeroShotValidationConfig = field(default_factory=ZeroShotValidationConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_train_configs() -> None:
    """Store the schema that configs/train.yaml names first. Safe to call again."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
