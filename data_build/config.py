"""The build's config schema: one `BuildConfig` holding each stage's config (segment, caption,
refine), the input and output, the partition this worker builds and how samples are written. It is
registered with Hydra's ConfigStore as `build_schema`, which configs/build.yaml names as its first
default, so importing this module is what makes `build` composable. `STAGES` names the cached stages
in the order they run: the values `stages=[...]` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from action100m.backends.config import serving
from action100m.config import VideoConfig
from data_build.caption import CaptionConfig
from data_build.guard import GuardConfig
from data_build.refine import RefineConfig
from data_build.segment import SegmentConfig

STAGES = ("segment", "caption", "refine")


@dataclass
class PartitionConfig:
    index: int = 0
    count: int = 1


@dataclass
class SampleVideoConfig:
    mode: str = "copy"  # copy: the source file's bytes | reencode | none: the record names the source path
    short_side: int = 256
    fps: float | None = None
    crf: int = 23


@dataclass
class WandbConfig:
    enabled: bool = False
    project: str = "action100m-build"
    entity: str | None = None
    mode: str = "offline"  # offline unless you want the run synced as it goes


@dataclass
class BuildConfig:
    input: str = MISSING  # a manifest (.jsonl), a folder of videos, or official annotations (.json/.parquet)
    output: str = MISSING
    videos: str | None = None  # with official annotations: the folder holding <video_uid>.mp4
    preset: str = "custom"  # set by the build=... preset, recorded in provenance
    shard_prefix: str = "action100m"
    samples_per_shard: int = 100
    batch_videos: int = 8  # videos segmented and captioned together (encoder and backend batches)
    # Batches open at once (bounds memory): segmentation, captioning, refinement and writing each work
    # on a batch of their own, so the segmentation GPU need not wait for the servers; 1: one batch at a
    # time through every stage, in order (data_build/pipeline.py)
    batches_in_flight: int = serving(4)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    stages: list[str] | None = None  # stages allowed to differ from the previous run's config
    force: bool = False  # continue a build whose manifest or config changed (stale shards are rebuilt)
    retry_failed: bool = False  # rebuild the shards with failures, retrying what failed
    strict: bool = False  # exit non-zero when anything failed
    max_pixels: int = 4096 * 4096
    max_fps: float = 240.0
    ground_truth: str | None = None  # SynthActions truth for caption.mode=synthetic; default: beside input
    video: VideoConfig = field(default_factory=VideoConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    sample_video: SampleVideoConfig = field(default_factory=SampleVideoConfig)
    # Before the first video, each configured backend answers one real request of the kind the build
    # sends (data_build/canary.py); a refusing server stops the build there, naming itself.
    canary: bool = True
    failure_guard: GuardConfig = field(default_factory=GuardConfig)  # data_build/guard.py
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress: bool = True


ConfigStore.instance().store(name="build_schema", node=BuildConfig)
