"""train.py as a command: a multirun over two data scales, and a 2-process DDP run on CPU (gloo)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from action100m.config import CONFIG_DIR
from action100m.dataset.shards import read_tar, write_tar
from action100m.train.config import register_train_configs
from tests.train.data.shardset import demo_shards

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "trainer.progress_bar=false",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.epoch_batches=4",
    "data.shuffle_buffer=20",
    "logger=csv",
    "trainer.max_steps=2",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


def train(*overrides):
    done = subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def runs(folder):
    return {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/run.json")}


@pytest.mark.slow
def test_a_multirun_over_two_scales_writes_two_runs(shards, tmp_path):
    train("-m", "name=sweep", f"data.shards={shards}", "data.scale=0.25,0.5", f"output_dir={tmp_path}", *FAST)
    found = runs(tmp_path)
    assert sorted((r["data"]["scale"], r["data"]["shards"]) for r in found.values()) == [(0.25, 2), (0.5, 4)]
    assert all(
        name.startswith("sweep-tiny-scale0.") and (tmp_path / name / "checkpoints" / "last.ckpt").is_file()
        for name in found
    )


def with_broken_videos(shards, out):
    """A copy of the shard set where every shard holds, before its video, a copy of its record whose
    mp4 is not one: every rank skips samples."""
    for tar in sorted((shards / "shards").glob("*.tar")):
        [(key, files)] = list(read_tar(tar))
        record = json.loads(files["json"])
        broken = {"json": json.dumps({**record, "video_uid": f"broken{key}"}).encode(), "mp4": b"\0" * 4000}
        count, sha = write_tar(out / "shards" / tar.name, [(f"broken{key}", broken), (key, files)])
        marker = json.loads(Path(f"{tar}.done").read_text())
        Path(f"{out / 'shards' / tar.name}.done").write_text(
            json.dumps({**marker, "samples": count, "sha256": sha})
        )
    return out


@pytest.mark.slow
def test_two_ddp_processes_on_cpu_train_one_run_counting_every_ranks_skipped_samples(shards, tmp_path):
    broken = with_broken_videos(shards, tmp_path / "broken")
    train(
        "name=ddp",
        f"data.shards={broken}",
        f"output_dir={tmp_path / 'runs'}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        *FAST,
    )
    [(name, run)] = runs(tmp_path / "runs").items()
    assert run["global_step"] == 2 and run["samples_seen"] == 2 * 4 * 2  # steps x batch x ranks
    # both ranks' skips, in the summary, the logged metric and the checkpoint every rank resumes from
    checkpoint = torch.load(tmp_path / "runs" / name / "checkpoints" / "last.ckpt", weights_only=True)
    skipped = checkpoint["action100m"]["skipped_samples"]
    assert skipped > 0 and run["skipped_samples"] == run["metrics"]["train/skipped_samples"] == skipped


def test_the_slurm_sweep_submits_one_submitit_job_per_scale_shaped_like_its_trainer():
    register_train_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["experiment=scaling_slurm", "data.shards=/data", "hydra.launcher.nodes=2"],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)  # what a job sees: `${hydra:launcher...}` resolves
    try:
        assert (cfg.trainer.num_nodes, cfg.trainer.devices, cfg.hydra.launcher.tasks_per_node) == (2, 8, 8)
    finally:
        HydraConfig.instance().cfg = None
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert cfg.ckpt_path == "last" and cfg.trainer.requeue is False and cfg.model.preset == "vljepa_paper"


def test_a_missing_required_value_is_one_line():
    done = subprocess.run(
        [sys.executable, "train.py", "logger=csv"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "train: error: data.shards: no value given (add data.shards=...)"
    ]
