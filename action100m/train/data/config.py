"""Training-data config: the shard set, the data scale, the text-field mix, node filters, the loader."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from action100m.config import VideoBackend


@dataclass
class ResampleConfig:
    """Semantic resampling (the paper's §5.4): brief actions embedded, deduplicated and clustered;
    clusters drawn uniformly with replacement."""

    enabled: bool = False
    clusters: int = 1000  # k of k-means (capped at the number of distinct texts)
    model: str = "minilm"  # the sentence-transformers model embedding them (the paper: EmbeddingGemma-300M)
    seed: int = 0
    batch_size: int = 256


@dataclass
class DataConfig:
    shards: str = MISSING  # a shard set (OUT) or its shards/ folder
    scale: float = 1.0  # the fraction of shards used: the first ones of a fixed shuffled order (nested)
    samples_seen: int | None = (
        None  # the budget: training stops after this many samples (else trainer.max_steps)
    )
    # field -> weight; each sample's text is drawn among its node's non-empty, non-"N/A" fields by weight
    text_fields: dict[str, float] = field(default_factory=lambda: {"action_brief": 1.0})
    min_duration: float = 0.0  # seconds
    max_duration: float | None = None
    annotated_only: bool = False  # only nodes with an LLM annotation
    num_frames: int = 8
    crop_size: int = 32
    batch_size: int = 32  # per device
    num_workers: int = 2  # per device; every worker reads its own stream of resampled shards
    epoch_batches: int = 100  # batches per rank in one Lightning epoch
    # nodes in flight per worker: whole videos are pooled until it holds this many, and each batch
    # takes its nodes from distinct videos of the pool (memory: ~shuffle_buffer / nodes-per-video mp4s)
    shuffle_buffer: int = 1000
    open_shards: int = 4  # shards each worker reads at once, taking their videos in turn
    seed: int = 0
    video_backend: VideoBackend = VideoBackend.decord  # not torchcodec: see action100m/config.py VideoConfig
    decode_threads: int = 1  # per worker
    max_consecutive_failures: int = 200  # unreadable samples in a row before the run stops
    val_shards: str | None = None  # a separate shard set for validation; none: no validation
    val_batches: int = 10  # per rank
    cache_dir: str | None = None  # shard scans, resampling tables, clips; default: <shard set>/cache
    # decode each shard's clips once, into cache_dir, and train on those (small shard sets: see clips.py)
    clip_cache: bool = False
    resample: ResampleConfig = field(default_factory=ResampleConfig)
