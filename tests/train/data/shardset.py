"""A small `build=demo` shard set of SynthActions videos, built once per test session and shared."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from action100m.synth.generate import generate_dataset
from data_build.run import run_build

VIDEOS = 8  # one per shard: 8 shards, so scales 0.25 ⊂ 0.5 ⊂ 1.0 are 2, 4 and 8 shards
# A few quick steps of the tiny model on these shards, as the 2-rank requeue checks train it
# (tests/cluster/test_slurm_train.py, tests/train/test_requeue.py, benchmarks/faults/requeue.py).
QUICK_TRAIN = [
    "logger=csv",
    "trainer.progress_bar=false",
    "data.batch_size=4",
    "data.num_workers=1",
    "data.epoch_batches=4",
    "data.shuffle_buffer=20",
    "data.scale=0.5",
    "optim.lr=1e-3",
]


def build_shards(synth: Path, out: Path, *overrides: str) -> Path:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "build",
            overrides=[
                f"input={synth / 'manifest.jsonl'}",
                f"output={out}",
                "segment.features=pixel",
                "progress=false",
                *overrides,
            ],
        )
    run_build(OmegaConf.to_object(cfg))
    return out


def demo_shards(tmp_path_factory) -> Path:
    """OUT of a demo build of 8 SynthActions videos, one video per shard (shared: do not modify)."""
    out = tmp_path_factory.getbasetemp() / "train-shards"
    if not (out / "stats.json").is_file():
        synth = tmp_path_factory.getbasetemp() / "train-synth"
        generate_dataset(synth, videos=VIDEOS, seed=3, overwrite=True)
        build_shards(synth, out, "samples_per_shard=1")
    return out
