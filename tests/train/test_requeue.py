"""SLURM's requeue signal under DDP, without SLURM: two train.py ranks in gloo DDP on 127.0.0.1, each with
the environment srun gives a task, and a stand-in `scontrol` that records what it is asked. USR1 reaches
the ranks at different moments (rank 0 first, rank 1 a seeded moment later, rank 0 again while the
checkpoint is written): the ranks must write one requeue checkpoint, requeue the job once and exit, and
the requeued attempt must resume there and end with the weights of the run trained straight.

Lightning's own handler ran the save (and its barrier) inside the signal handler, wherever the signal
landed, while the other rank was at another collective: both ranks hung."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from action100m.cluster.slurm import ROOT
from tests.train.data.shardset import QUICK_TRAIN, demo_shards

STEPS, EVERY, JOB = 8, 2, "4242"
TRAIN = [
    "model=tiny",
    "trainer=cpu",
    "trainer.accelerator=cpu",
    "trainer.strategy=ddp",
    "trainer.devices=2",
    "trainer.num_nodes=1",
    *QUICK_TRAIN,
    f"trainer.max_steps={STEPS}",
    f"checkpoint.every_n_steps={EVERY}",
    "ckpt_path=last",
]
EXIT_S = 90  # from the first signal to both ranks' exit; a hang is the defect


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(shards: Path, out: Path, tmp_path: Path) -> list[subprocess.Popen]:
    """Both ranks as srun starts the tasks of a 2-task job on one node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n')
    scontrol.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SCONTROL_LOG": str(tmp_path / "scontrol.log"),
        "SLURM_JOB_ID": JOB,
        "SLURM_JOB_NAME": "a100m-train",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WANDB_MODE": "offline",
        "PYTHONFAULTHANDLER": "1",  # SIGABRT on a hang prints every thread's stack
    }
    env.pop("SLURM_CONF", None)
    out.mkdir(parents=True, exist_ok=True)
    ranks = []
    for rank in range(2):
        log = open(out / f"rank{rank}.log", "ab")
        ranks.append(
            subprocess.Popen(
                [sys.executable, "train.py", f"data.shards={shards}", f"output_dir={out / 'runs'}", *TRAIN],
                env={**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    return ranks


def logs(out: Path) -> str:
    """The ranks' logs, without faulthandler's line of some 10 kB naming every extension module."""
    texts = []
    for path in sorted(out.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        kept = [line for line in lines if not line.startswith("Extension modules")]
        texts.append("\n".join([f"--- {path.name}", *kept]))
    return "\n".join(texts)


def wait_exit(ranks: list[subprocess.Popen], out: Path, deadline: float) -> list[int]:
    """The ranks' exit codes; a rank still alive at the deadline has its stacks printed, and fails."""
    while any(rank.poll() is None for rank in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    hung = [rank for rank in ranks if rank.poll() is None]
    for rank in hung:
        rank.send_signal(signal.SIGABRT)  # faulthandler: the stacks go to the rank's log
    for rank in hung:
        try:
            rank.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rank.kill()
            rank.wait()
    assert not hung, f"ranks {[ranks.index(r) for r in hung]} hung\n{logs(out)}"
    return [rank.returncode for rank in ranks]


def wait_for(what: str, ready, ranks: list[subprocess.Popen], out: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline or any(rank.poll() is not None for rank in ranks):
            wait_exit(ranks, out, time.monotonic())
            raise AssertionError(f"{what}: not after {timeout} s\n{logs(out)}")
        time.sleep(0.01)


def wait_for_first_checkpoint(ranks: list[subprocess.Popen], out: Path) -> None:
    """Until the ranks have trained past a step boundary (the first periodic checkpoint)."""
    checkpoint = f"*/checkpoints/step-{EVERY:07d}.ckpt"
    wait_for("the first periodic checkpoint", lambda: any((out / "runs").glob(checkpoint)), ranks, out, 240)


def last_weights(out: Path) -> tuple[int, dict]:
    [path] = list((out / "runs").glob("*/checkpoints/last.ckpt"))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return checkpoint["global_step"], checkpoint["state_dict"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_usr1_at_different_moments_on_two_ranks_checkpoints_once_requeues_once_and_resumes_exactly(
    shards, tmp_path
):
    straight = tmp_path / "straight"
    assert wait_exit(start_ranks(shards, straight, tmp_path), straight, time.monotonic() + 240) == [0, 0]

    split = tmp_path / "split"
    ranks = start_ranks(shards, split, tmp_path)
    wait_for_first_checkpoint(ranks, split)
    skew = random.Random(0).uniform(0.05, 0.5)
    ranks[0].send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + EXIT_S
    time.sleep(skew)
    ranks[1].send_signal(signal.SIGUSR1)
    # again while the requeue checkpoint is being written (its temp file exists): nothing more may happen
    saving = time.monotonic() + 20
    while time.monotonic() < saving and ranks[0].poll() is None:
        if any((split / "runs").glob("*/.hpc_ckpt_*.tmp")):
            ranks[0].send_signal(signal.SIGUSR1)
            break
        time.sleep(0.002)
    assert wait_exit(ranks, split, deadline) == [0, 0], logs(split)
    log = logs(split)
    [hpc] = list((split / "runs").glob("*/hpc_ckpt_*.ckpt"))
    saved_step = torch.load(hpc, map_location="cpu", weights_only=False)["global_step"]
    assert EVERY <= saved_step < STEPS, log
    assert (tmp_path / "scontrol.log").read_text() == f"requeue {JOB}\n", log
    assert log.count("requeue: USR1 at step") == 1, log

    assert wait_exit(start_ranks(shards, split, tmp_path), split, time.monotonic() + 240) == [0, 0]
    log = logs(split)
    assert f"resuming from {hpc}" in log and f"Restored all states from the checkpoint at {hpc}" in log, log
    assert (tmp_path / "scontrol.log").read_text() == f"requeue {JOB}\n"  # no requeue after the resume
    step_a, weights_a = last_weights(straight)
    step_b, weights_b = last_weights(split)
    assert step_a == step_b == STEPS
    for key in weights_a:  # gloo's allreduce in the same order: equal but for float rounding
        assert torch.allclose(weights_a[key], weights_b[key], atol=1e-6), key


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_on_one_rank_stops_both_at_a_step_boundary_with_a_checkpoint_and_no_requeue(shards, tmp_path):
    """SIGTERM without USR1, to one trainer process: every rank saves and exits, nobody requeues.
    Lightning's handler broadcast from inside the handler, on the signalled rank alone: both hung."""
    out = tmp_path / "stopped"
    ranks = start_ranks(shards, out, tmp_path)
    wait_for_first_checkpoint(ranks, out)
    ranks[1].send_signal(signal.SIGTERM)
    assert wait_exit(ranks, out, time.monotonic() + EXIT_S) == [143, 143], logs(out)
    log = logs(out)
    [hpc] = list((out / "runs").glob("*/hpc_ckpt_*.ckpt"))
    assert EVERY <= torch.load(hpc, map_location="cpu", weights_only=False)["global_step"] < STEPS
    assert log.count("requeue: SIGTERM at step") == 1 and "exiting without a requeue" in log, log
    assert not (tmp_path / "scontrol.log").exists()
    assert not list((out / "runs").glob("*/run.json"))  # the run did not finish
