"""slurm/train.sh parses, and its dry runs print the sbatch and srun commands a cluster would run."""

import os
import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir

from action100m.config import CONFIG_DIR
from action100m.data.module import plan_data
from action100m.train_config import register_train_configs
from action100m.training import as_train_config, run_name
from tests.data.shardset import demo_shards

SCRIPT = Path(__file__).resolve().parents[1] / "slurm" / "train.sh"


def run(*args, **env):
    # only PATH from outside: the SLURM_* variables of a real job must not leak in
    result = subprocess.run(["bash", str(SCRIPT), *args], env={"PATH": os.environ["PATH"], **env},
                            capture_output=True, text=True)  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_it_submits_a_multi_node_job_that_requeues_on_the_time_limit_signal():
    code, out, err = run("--dry-run", "data.scale=0.1", SHARDS="/data/a100m", NODES="4", GPUS_PER_NODE="8",
                         PARTITION="h100", TIME="12:00:00")  # fmt: skip
    assert code == 0, err
    [line] = out.splitlines()
    words = line.split(" ")
    assert words[0] == "sbatch" and words[-2:] == [str(SCRIPT), "data.scale=0.1"]
    for option in ["--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--requeue", "--signal=USR1@90",
                   "--partition=h100", "--time=12:00:00", "--output=logs/train-%j.out"]:  # fmt: skip
        assert option in words, option


def test_inside_the_job_srun_starts_one_task_per_gpu_with_the_allocation_as_the_trainer_shape():
    code, out, err = run("data.scale=0.1", DRY_RUN="1", SHARDS="/data/a100m", SLURM_JOB_ID="77",
                         SLURM_JOB_NUM_NODES="4", SLURM_NTASKS_PER_NODE="8")  # fmt: skip
    assert code == 0, err
    [line] = out.splitlines()
    assert line.split(" ") == [
        "srun", "--kill-on-bad-exit=1", "python", "train.py", "model=vljepa_paper", "trainer=gpu",
        "data.shards=/data/a100m", "output_dir=runs/train", "trainer.num_nodes=4", "trainer.devices=8",
        "ckpt_path=last", "data.scale=0.1",
    ]  # fmt: skip


def test_missing_or_bad_settings_are_errors():
    code, _, err = run("--dry-run")
    assert code == 2 and "SHARDS is not set" in err
    code, _, err = run("--dry-run", SHARDS="x", NODES="two")
    assert code == 2 and "NODES must be a positive number" in err


def train_overrides(line, shards):
    words = line.split(" ")
    overrides = words[words.index("train.py") + 1 :]
    return [f"data.shards={shards}" if word.startswith("data.shards=") else word for word in overrides]


def test_a_requeued_or_resized_paper_job_is_the_same_run(tmp_path_factory):
    shards = demo_shards(tmp_path_factory)
    register_train_configs()
    names = set()
    for env in ({"SLURM_JOB_NUM_NODES": "4"}, {"SLURM_JOB_NUM_NODES": "4", "SLURM_RESTART_COUNT": "1"},
                {"SLURM_JOB_NUM_NODES": "2"}):  # fmt: skip
        code, out, err = run("data.scale=0.5", DRY_RUN="1", SHARDS="/data/a100m", SLURM_JOB_ID="77",
                             SLURM_NTASKS_PER_NODE="8", **env)  # fmt: skip
        assert code == 0, err
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = as_train_config(compose("train", overrides=train_overrides(out.strip(), shards)))
        assert cfg.trainer.global_batch_size == 12288 and cfg.ckpt_path == "last"
        names.add(run_name(cfg, plan_data(cfg.data)))
    assert len(names) == 1
