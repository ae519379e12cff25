"""`bash slurm/train.sh` on the live cluster: a 2-task gloo DDP job on the CPU partition, forced through
one requeue by SLURM's time-limit signal (USR1) reaching its ranks at different moments, ends with the
weights of the same run trained straight. benchmarks/faults/requeue.py sends many more."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from action100m.cluster.slurm import job_info, sbatch, wait_job
from tests.train.data.shardset import QUICK_TRAIN, demo_shards

pytestmark = pytest.mark.cluster

STEPS = 12
TRAIN = [*QUICK_TRAIN, f"trainer.max_steps={STEPS}", "checkpoint.every_n_steps=4"]


def submit(shards: Path, tmp_path: Path, name: str, env: dict) -> tuple[str, Path]:
    out = tmp_path / name
    job = sbatch(
        ["bash", "slurm/train.sh", *TRAIN],
        {
            **env,
            "SHARDS": str(shards),
            "MODEL": "tiny",
            "DEVICE": "cpu",
            "TASKS_PER_NODE": "2",
            "MEM": "8000",
            "TIME": "10:00",
            "OUTPUT_DIR": str(out / "runs"),
            "LOG_DIR": str(out / "logs"),
        },
    )
    return job, out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


def weights(path: Path) -> tuple[int, dict]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return checkpoint["global_step"], checkpoint["state_dict"]


def optimizer(path: Path) -> dict:
    [state] = torch.load(path, map_location="cpu", weights_only=False)["optimizer_states"]
    return state["state"]


def task_pids(job: str, env: dict) -> dict[int, int]:
    """rank -> PID of the job's training tasks (the rows of `scontrol listpids` with a task id)."""
    done = subprocess.run(["scontrol", "listpids", job], env=env, capture_output=True, text=True, timeout=30)
    rows = [row.split() for row in done.stdout.splitlines()[1:]]
    return {int(r[4]): int(r[0]) for r in rows if len(r) == 5 and r[2] != "batch" and r[4].isdigit()}


@pytest.mark.timeout(600)
def test_a_requeued_cpu_ddp_job_checkpoints_once_requeues_once_and_ends_as_the_straight_run(
    slurm_env, shards, tmp_path
):
    # the node's 2 CPUs hold one 2-task job at a time: the straight run queues behind the split one
    split, split_out = submit(shards, tmp_path, "split", slurm_env)
    straight, straight_out = submit(shards, tmp_path, "straight", slurm_env)
    # once the split job has trained past its first periodic checkpoint, SLURM's time-limit signal, skewed:
    # USR1 to rank 1 alone, then to every task of its steps (--signal=USR1@90, no B:), then again while
    # the requeue checkpoint is written. Lightning's handler deadlocked on the first alone.
    deadline = time.monotonic() + 120
    while not list((split_out / "runs").glob("*/checkpoints/step-0000004.ckpt")):
        assert time.monotonic() < deadline, "the split job never reached step 4"
        assert job_info(split, slurm_env).get("JobState") in ("PENDING", "RUNNING"), job_info(
            split, slurm_env
        )
        time.sleep(0.2)
    signalled = time.monotonic()
    os.kill(task_pids(split, slurm_env)[1], signal.SIGUSR1)
    time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR1", split], env=slurm_env, check=True, timeout=30)
    saving = time.monotonic() + 30
    while time.monotonic() < saving and not list((split_out / "runs").glob("*/hpc_ckpt_*.ckpt")):
        if list((split_out / "runs").glob("*/.hpc_ckpt_*.tmp")):
            subprocess.run(["scancel", "--signal=USR1", split], env=slurm_env, timeout=30)
            break
        time.sleep(0.002)
    # SLURM holds a requeued batch job for 2 minutes (hard-coded); let it start as soon as the node is free.
    # Reaching the requeued state took over 60 s once on a loaded 2-core machine (CI at b180ca6).
    deadline = time.monotonic() + 150
    while (job_info(split, slurm_env).get("Restarts"), job_info(split, slurm_env).get("JobState")) != (
        "1",
        "PENDING",
    ):
        assert time.monotonic() < deadline, job_info(split, slurm_env)
        time.sleep(0.2)
    subprocess.run(
        ["scontrol", "update", f"JobId={split}", "StartTime=now"], env=slurm_env, check=True, timeout=30
    )
    for job in (straight, split):
        info = wait_job(job, slurm_env, timeout=240)
        assert info["JobState"] == "COMPLETED", (info, read_logs(tmp_path))
    print(f"requeued job done {time.monotonic() - signalled:.1f} s after the signal")

    info = job_info(split, slurm_env)
    assert info["Restarts"] == "1", info
    log = read_logs(split_out)
    assert "(restart 0)" in log and "(restart 1)" in log, log  # the first attempt's output kept (append)
    # one agreed requeue for all the signals: one save, one requeue call (by rank 0 of the trainer, not by
    # a loader worker, a fork of it that once wrote a checkpoint of its own stale trainer and requeued again)
    assert log.count("requeue: USR1 at step") == 1, log
    assert log.count(f"; requeueing job {split}") == 1, log
    ctld = Path(slurm_env["SLURM_CONF"]).parent / "log" / "slurmctld.log"
    assert ctld.read_text().count(f"Requeuing JobId={split}\n") == 1  # slurmctld requeued it once
    assert "pending execution" not in log  # no second requeue call on the already requeued job
    [run] = list((split_out / "runs").glob("*/run.json"))
    [hpc] = list(run.parent.glob("hpc_ckpt_*.ckpt"))  # one requeue checkpoint, the one resumed from
    saved_step, _ = weights(hpc)
    assert 4 <= saved_step < STEPS
    # the rerun resumed from that checkpoint, at the step it saved
    assert f"resuming from {hpc}" in log and f"Restored all states from the checkpoint at {hpc}" in log
    [straight_run] = list((straight_out / "runs").glob("*/run.json"))
    assert straight_run.parent.name == run.parent.name  # the same run
    step_a, weights_a = weights(straight_run.parent / "checkpoints" / "last.ckpt")
    step_b, weights_b = weights(run.parent / "checkpoints" / "last.ckpt")
    assert step_a == step_b == STEPS
    # same data, same seed, gloo's allreduce in the same order: equal but for float rounding (1e-6)
    for key in weights_a:
        assert torch.allclose(weights_a[key], weights_b[key], atol=1e-6), key
    optim_a = optimizer(straight_run.parent / "checkpoints" / "last.ckpt")
    optim_b = optimizer(run.parent / "checkpoints" / "last.ckpt")
    assert optim_a.keys() == optim_b.keys()
    for key in optim_a:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.allclose(optim_a[key][name], optim_b[key][name], atol=1e-6), (key, name)
    print(f"requeue checkpoint at step {saved_step} of {STEPS}; resumed there; final weights equal")


def read_logs(folder: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(folder.rglob("logs/*.out")))
