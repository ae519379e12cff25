"""Typed config of `python eval.py` (configs/eval.yaml), registered in Hydra's ConfigStore.

The encoder group's two options (`encoder=vljepa`, the default, and `encoder=clip`) are schemas stored
here; every benchmark is a YAML file of the `zero_shot` group (configs/zero_shot/<name>.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from action100m.config import VideoConfig


@dataclass
class BenchmarkConfig:
    """One benchmark (or, with `suite`, several). Empty strings mean "the reader's default"."""

    name: str = ""  # in tables and output paths: ssv2, coin_step, ...
    reader: str = ""  # the registry's reader (action100m/eval/benchmarks/)
    root: str = ""  # the folder holding the annotation files
    videos: str | None = None  # the folder the video paths start from (default: root)
    split: str = ""
    task: str = ""  # e.g. verb | noun | action (EPIC), step | task (COIN, CrossTask)
    class_names: str = ""  # class-name source, where a reader has several (UCF101: official | clip)
    files: dict[str, str] = field(default_factory=dict)  # rename a reader's files by role
    layout: str = ""  # video layout, where a benchmark is published in several
    video_ext: str = ""
    templates: str = "default"  # a set in action100m/eval/prompts.py
    template_list: list[str] = field(default_factory=list)  # own templates instead of the set
    num_frames: int | None = None  # None: the encoder's own
    temporal_views: int = 1  # clips per sample, from equal parts of its span; embeddings averaged
    spatial_crops: int = 1  # 1: centre; 3: left, centre, right squares along the long side
    suite: list[str] = field(default_factory=list)  # zero_shot=all: run these benchmark configs in turn


@dataclass
class EncoderConfig:
    kind: str = "vljepa"  # vljepa: checkpoint=PATH | clip: any transformers CLIP/SigLIP id or folder
    model: str | None = None  # clip only
    num_frames: int = 8  # clip only (the papers' baselines use 8); VL-JEPA brings its own
    device: str = "cpu"
    dtype: str = "float32"  # clip only: float32 | bfloat16 | float16


@dataclass
class WandbConfig:
    enabled: bool = False
    project: str = "action100m-eval"
    entity: str | None = None
    mode: str = "offline"


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class EvalConfig:
    zero_shot: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    checkpoint: str | None = None  # encoder=vljepa: the checkpoint file
    # encoder=vljepa: several checkpoints (a scale or seed sweep) scored in turn on clips decoded once;
    # each gets the result files and W&B run it would get alone. The decoded clips stay in memory.
    checkpoints: list[str] = field(default_factory=list)
    query: str | None = None  # encoder=vljepa: the predictor's query (default: the checkpoint's own)
    data_root: str = "data"  # where the benchmark configs look for their folders by default
    num_frames: int | None = None  # overrides every benchmark's (e.g. 8 for zero_shot=all)
    output_dir: str = "runs/eval"
    cache_dir: str | None = "runs/eval/cache"  # class-text embeddings per model + templates; None: off
    check_only: bool = False  # read the annotations, count missing videos, load no model
    allow_missing: bool = False  # evaluate without missing or undecodable videos (counted in the JSON)
    batch_size: int = 8
    text_batch_size: int = 256
    # DataLoader processes decoding clips; 0 decodes in this process, where torch's threads slow it down.
    workers: int = 2
    progress: bool = True
    video: VideoConfig = field(default_factory=VideoConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_eval_configs() -> None:
    """Store the schemas eval.yaml names. Safe to call again."""
    store = ConfigStore.instance()
    store.store(name="eval_schema", node=EvalConfig)
    store.store(group="encoder", name="vljepa", node=EncoderConfig(kind="vljepa"))
    store.store(
        group="encoder", name="clip", node=EncoderConfig(kind="clip", model="openai/clip-vit-large-patch14")
    )
