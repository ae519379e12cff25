"""`SlurmRequeue`: SLURM's time-limit signal (USR1) and SIGTERM under DDP, acted on at a step boundary.

Lightning's own handlers run collectives inside the signal handler: on USR1 the requeue save ends in a
barrier, on SIGTERM a broadcast. Python runs a handler wherever the main thread is when the signal lands,
so one rank could enter that barrier while another sat in a gradient all-reduce or in Lightning's per-step
broadcast, and both hung until the time limit killed the job, with no checkpoint and no requeue. SLURM
signals every task at about the same moment, so that happened (1 run in 4 of `make cluster-smoke`).

Here the handlers only note the signal. At each optimizer-step boundary every rank takes part in one
all-reduce of what it was sent; if any rank got USR1 all save <run>/hpc_ckpt_N.ckpt together (Lightning's
name for it, which `ckpt_path=last` resumes from), rank 0 runs `scontrol requeue`, and all exit. A signal
that lands during the agreement, the save or the requeue is noted and changes nothing.

SIGTERM without USR1 (a preemption, scancel, the time limit without the warning) saves the same way and
exits without a requeue: SLURM requeues a preempted job itself, and the saved step is a closer resume
point than the last periodic checkpoint. It is a best effort: SLURM kills the job KillWait seconds after
SIGTERM, and it signals the loader workers too, whose death makes the DataLoader raise in the rank at
once, before any boundary (what `scancel` does to a job with data.num_workers > 0). Either way no rank
waits on another; a save cut short leaves only a temp file, and the run resumes from its newest whole
checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import WandbLogger

SIGTERM_EXIT = 128 + signal.SIGTERM  # the status of a process that SIGTERM ended


def say(line: str) -> None:
    """One line to stderr in one write: the ranks of a job share one log, and a line written in two
    pieces (print's text, then its newline, unbuffered) can have another rank's between them."""
    os.write(2, f"{line}\n".encode())


def slurm_job_id() -> str:
    """The id `scontrol requeue` takes: <array job>_<task> for a task of a job array."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]


def requeue_job(job: str) -> str | None:
    """`scontrol requeue JOB`; None when it was requeued, else what went wrong."""
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"


class SlurmRequeue(Checkpoint):
    """Requeues the job on USR1 (with `requeue`), stops it on SIGTERM, at the next optimizer-step boundary.

    A `Checkpoint`, so that Lightning runs it after the other callbacks at the end of a batch: the periodic
    and best checkpoints of that step are written before it saves and exits."""

    def __init__(self, requeue: bool = True):
        self.requeue = requeue
        self.usr1 = self.sigterm = False  # what this rank was sent; set by the handlers only
        self._step = -1
        self._path = ""
        self._rank = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its handlers before this hook (Trainer._run) and restores the ones from
        # before fit when it tears down, so these replace its own for the fit and no longer.
        self._step = trainer.global_step
        # named now, the same on every rank: once rank 0 has written it, hpc_save_path names the next one
        self._path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        self._rank = trainer.global_rank
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            if self.requeue:
                signal.signal(signal.SIGUSR1, self._note)
            signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        # No lock, no collective, no buffered I/O: the main thread may be anywhere, in print() included.
        if signum == signal.SIGUSR1:
            self.usr1 = True
        else:
            self.sigterm = True
        say(f"requeue: rank {self._rank} got {signal.Signals(signum).name}; acting at the next step boundary")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Between the micro-batches of one accumulated step the global step stays: no whole step to save.
        # Every rank is at the same global step, so every rank takes part in the collective below, or none.
        if trainer.global_step == self._step:
            return
        self._step = trainer.global_step
        if 0 < trainer.max_steps <= trainer.global_step:
            return  # the run ends at this step: finishing it is better than a requeue
        usr1, sigterm = self._agree(trainer)
        if usr1 or sigterm:
            self._save_and_exit(trainer, requeue=usr1)

    def _agree(self, trainer: L.Trainer) -> tuple[bool, bool]:
        """What any rank was sent, on every rank: one all-reduce (max) of the two flags."""
        flags = torch.tensor(
            [self.usr1, self.sigterm], dtype=torch.int32, device=trainer.strategy.root_device
        )
        if trainer.world_size > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        usr1, sigterm = flags.tolist()
        return bool(usr1), bool(sigterm)

    def _save_and_exit(self, trainer: L.Trainer, requeue: bool) -> None:
        # on every rank (a strategy may write shards), the optimizer state included; ends in a barrier
        trainer.save_checkpoint(self._path, weights_only=False)
        for logger in trainer.loggers:  # rank 0 writes the metrics it still buffers, as Lightning's did
            logger.finalize("finished")
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            import wandb

            wandb.finish()  # now: the requeue's SIGTERM may end this process before it exits
        what = f"requeue: {'USR1' if requeue else 'SIGTERM'} at step {trainer.global_step}"
        what += f": checkpoint saved to {self._path}"
        failed = None
        if trainer.is_global_zero and requeue:
            job = slurm_job_id()
            say(f"{what}; requeueing job {job}")
            failed = requeue_job(job)
            say(
                f"requeue: scontrol requeue {job} failed: {failed}"
                if failed
                else f"requeue: job {job} requeued"
            )
        elif trainer.is_global_zero:
            say(f"{what}; exiting without a requeue")
        # The checkpoint is whole: the SIGTERM the requeue brings may end this process wherever it is on
        # its way out. (Lightning's teardown puts back the handlers from before fit.)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # Through Lightning's interrupt handling, which runs no collective; run_training writes no run.json.
        raise SystemExit(SIGTERM_EXIT if not requeue else 1 if failed else 0)
