"""slurm/train.sh parses, and its dry runs print the sbatch and srun commands a cluster would run."""

import os
import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir

from action100m.config import CONFIG_DIR
from action100m.train.config import register_train_configs
from action100m.train.data.module import plan_data
from action100m.train.run import as_train_config, run_name
from tests.train.data.shardset import demo_shards

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "slurm" / "train.sh"
# the scripts' default interpreter: the repository's virtual environment, where there is one
VENV_PYTHON = (
    str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else "python"
)


def run(*args, **env):
    # only PATH from outside: the SLURM_* variables of a real job must not leak in
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True
    )
    return result.returncode, result.stdout, result.stderr


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_it_submits_a_multi_node_job_that_requeues_on_the_time_limit_signal():
    code, out, err = run(
        "--dry-run",
        "data.scale=0.1",
        SHARDS="/data/a100m",
        NODES="4",
        GPUS_PER_NODE="8",
        PARTITION="h100",
        TIME="12:00:00",
    )
    assert code == 0, err
    [line] = out.splitlines()
    words = line.split(" ")
    assert words[0] == "sbatch" and words[-2:] == [str(SCRIPT), "data.scale=0.1"]
    for option in [
        "--nodes=4",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--requeue",
        "--signal=USR1@90",
        "--partition=h100",
        "--time=12:00:00",
        "--output=logs/train-%j.out",
        "--open-mode=append",
    ]:
        assert option in words, option


def test_no_gpu_request_sits_in_the_sbatch_header():
    """A header line cannot be taken back from the command line: on a CPU partition a `#SBATCH --gres`
    or `--gpus-per-node` line fails the submit ("Invalid generic resource (gres) specification")."""
    header = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    assert header and not [line for line in header if "gpu" in line or "gres" in line], header
    assert "#SBATCH --open-mode=append" in header  # a requeue appends to the first attempt's log


def test_on_cpu_it_asks_for_no_gpu_and_runs_gloo_ddp_over_the_tasks():
    for env in ({"DEVICE": "cpu"}, {"GPUS_PER_NODE": "0"}):
        code, out, err = run("--dry-run", SHARDS="/data/a100m", **env)
        assert code == 0, err
        words = out.split()
        assert "--ntasks-per-node=2" in words and "--cpus-per-task=1" in words
        assert not [word for word in words if "gpu" in word or "gres" in word], words
        assert any(word.startswith("--export=") and "DEVICE=cpu" in word for word in words)
    code, out, err = run(
        "model=tiny",
        DRY_RUN="1",
        SHARDS="/s",
        DEVICE="cpu",
        SLURM_JOB_ID="7",
        SLURM_NTASKS_PER_NODE="2",
        SLURM_JOB_NUM_NODES="1",
        PYTHON="py",
    )
    assert code == 0, err
    assert out.split() == [
        "srun",
        "--kill-on-bad-exit=1",
        "py",
        "train.py",
        "model=vljepa_paper",
        "trainer=cpu",
        "data.shards=/s",
        "output_dir=runs/train",
        "trainer.num_nodes=1",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.strategy=ddp",
        "ckpt_path=last",
        "model=tiny",
    ]
    code, _, err = run("--dry-run", SHARDS="x", DEVICE="tpu")
    assert code == 2 and "DEVICE must be gpu or cpu, got 'tpu'" in err


def test_an_interpreter_without_hydra_is_one_clear_error(tmp_path):
    code, out, err = run(SHARDS="/s", SLURM_JOB_ID="7", PYTHON="/bin/false")
    assert code == 2 and err.strip().startswith(
        "slurm/train.sh: error: PYTHON=/bin/false cannot import hydra"
    )


def test_inside_the_job_srun_starts_one_task_per_gpu_with_the_allocation_as_the_trainer_shape():
    code, out, err = run(
        "data.scale=0.1",
        DRY_RUN="1",
        SHARDS="/data/a100m",
        SLURM_JOB_ID="77",
        SLURM_JOB_NUM_NODES="4",
        SLURM_NTASKS_PER_NODE="8",
    )
    assert code == 0, err
    [line] = out.splitlines()
    assert line.split(" ") == [
        "srun",
        "--kill-on-bad-exit=1",
        VENV_PYTHON,
        "train.py",
        "model=vljepa_paper",
        "trainer=gpu",
        "data.shards=/data/a100m",
        "output_dir=runs/train",
        "trainer.num_nodes=4",
        "trainer.devices=8",
        "ckpt_path=last",
        "data.scale=0.1",
    ]


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
    for env in (
        {"SLURM_JOB_NUM_NODES": "4"},
        {"SLURM_JOB_NUM_NODES": "4", "SLURM_RESTART_COUNT": "1"},
        {"SLURM_JOB_NUM_NODES": "2"},
    ):
        code, out, err = run(
            "data.scale=0.5",
            DRY_RUN="1",
            SHARDS="/data/a100m",
            SLURM_JOB_ID="77",
            SLURM_NTASKS_PER_NODE="8",
            **env,
        )
        assert code == 0, err
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = as_train_config(compose("train", overrides=train_overrides(out.strip(), shards)))
        assert cfg.trainer.global_batch_size == 12288 and cfg.ckpt_path == "last"
        names.add(run_name(cfg, plan_data(cfg.data)))
    assert len(names) == 1
