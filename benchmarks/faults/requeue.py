"""SLURM's requeue under many signals: a 2-task gloo DDP training job (`bash slurm/train.sh` on the live
one-node cluster of engines/slurm_cluster.sh) is sent USR1 at seeded points of its steps, attempt after
attempt, and must requeue every time.

Each attempt waits for its first periodic checkpoint (training under way), then a seeded 0-2 s (anywhere in
a step: the gradient all-reduce, Lightning's per-step broadcast, the agreement of the requeue flags, a
periodic save) and sends USR1 one of three ways: to the job (`scancel --signal=USR1`, what SLURM's --signal
does), to one rank and then the other after a seeded skew, or to one rank only (the task PIDs from
`scontrol listpids`). Then 0-2 more at once, to a rank or both, one to both while the requeue checkpoint is
being written (its temp file exists) and one once it is written (the requeue and the exit). Every time:

- the job is requeued (`Restarts` one higher, PENDING) within REQUEUE_S of the first signal, else it is
  counted a deadlock (its stacks go to the job log: SIGABRT with PYTHONFAULTHANDLER) and the run stops;
- exactly one new hpc_ckpt_N.ckpt, and slurmctld logged exactly one more "Requeuing JobId=";
- the requeued attempt (started at once: `scontrol update StartTime=now+2`) resumed from that very file,
  at the step it holds ("resuming from" it, and Lightning's "Restored all states from the checkpoint at").

The last attempt runs to the end, and its final weights must equal those of the same run trained straight
(same seed and data; 1e-6 for float summation order). Ends with `RESULT signals=.. requeues=..
checkpoints=.. resumed_at_saved_step=.. deadlocks=0 max_requeue_s=.. final_equal=..`; `signals` counts the
sends (one scancel to the job's tasks is one, as is a kill to one rank).

    python benchmarks/faults/requeue.py --quick [--seed 0] [--workdir DIR]   # 5 attempts (10 without)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from action100m.cluster.slurm import ClusterUnavailable, cluster_up, job_info, sbatch, wait_job  # noqa: E402
from action100m.synth.generate import generate_dataset  # noqa: E402
from tests.train.data.shardset import QUICK_TRAIN, VIDEOS, build_shards  # noqa: E402

REQUEUE_S = 120  # from an attempt's first signal to the job pending again; longer is a deadlock
START_S = 300  # from a requeue (or the submit) to the attempt's first periodic checkpoint
EVERY = 2  # checkpoint.every_n_steps: a periodic checkpoint marks a step boundary every 2 steps
STEPS_PER_ATTEMPT = 6  # an attempt trains at most ~4 steps before its requeue; the rest is margin
TRAIN = [*QUICK_TRAIN, f"checkpoint.every_n_steps={EVERY}", "checkpoint.keep_last=2"]


@dataclass
class Attempt:
    mode: str  # "job", "skew" or "one"
    delay: float  # after the attempt's first periodic checkpoint
    first: int  # the rank signalled first (skew, one)
    skew: float  # before the second rank (skew)
    extra: list[tuple[str, float]]  # ("0", "1" or "both", seconds after the first signal)
    signals: int = 0
    in_save: bool = False
    saved_step: int | None = None
    requeue_s: float | None = None
    resumed: bool = False
    problems: list[str] = field(default_factory=list)


def plan(attempts: int, seed: int) -> list[Attempt]:
    rng = random.Random(seed)
    modes = ["job", "skew", "one"]
    return [
        Attempt(
            mode=modes[number % 3],  # each way in turn, so a short run has all three
            delay=round(rng.uniform(0.0, 2.0), 3),
            first=rng.randrange(2),
            skew=round(rng.uniform(0.01, 0.5), 3),
            extra=[
                (rng.choice(["0", "1", "both"]), round(rng.uniform(0.0, 0.3), 3))
                for _ in range(rng.randrange(3))
            ],
        )
        for number in range(attempts)
    ]


def task_pids(job: str, env: dict[str, str]) -> dict[int, int]:
    """rank -> PID of the job's training tasks (`scontrol listpids`: the rows with a task id)."""
    done = subprocess.run(["scontrol", "listpids", job], env=env, capture_output=True, text=True, timeout=30)
    pids = {}
    for row in done.stdout.splitlines()[1:]:
        pid, _, step, _, rank = (row.split() + [""] * 5)[:5]
        if step not in ("batch", "extern") and rank.isdigit():
            pids[int(rank)] = int(pid)
    return pids


def usr1(target: str, job: str, pids: dict[int, int], env: dict[str, str]) -> int:
    """USR1 to the job's tasks through SLURM (`target` "job"), to one rank ("0", "1") or straight to both
    ("both": at once, where scancel waits on a job that is being requeued); returns the sends made."""
    if target == "job":
        done = subprocess.run(["scancel", "--signal=USR1", job], env=env, capture_output=True, timeout=30)
        return int(done.returncode == 0)
    sent = 0
    for rank in (0, 1) if target == "both" else (int(target),):
        try:
            os.kill(pids[rank], signal.SIGUSR1)
            sent += 1
        except (KeyError, ProcessLookupError):
            pass
    return sent


def _build_shards(work: Path) -> Path:
    """The tests' shard set (8 SynthActions videos, one per shard), built once in `work`."""
    synth, out = work / "synth", work / "build"
    generate_dataset(synth, videos=VIDEOS, seed=3, overwrite=True)
    return build_shards(synth, out, "samples_per_shard=1")


def _submit(shards: Path, out: Path, steps: int, env: dict[str, str]) -> str:
    return sbatch(
        ["bash", "slurm/train.sh", *TRAIN, f"trainer.max_steps={steps}"],
        {
            **env,
            "SHARDS": str(shards),
            "MODEL": "tiny",
            "DEVICE": "cpu",
            "TASKS_PER_NODE": "2",
            "MEM": "8000",
            "TIME": "30:00",
            "OUTPUT_DIR": str(out / "runs"),
            "LOG_DIR": str(out / "logs"),
            "WANDB_MODE": "offline",
            "PYTHONFAULTHANDLER": "1",  # SIGABRT on a deadlock prints every thread's stack to the job log
        },
    )


def _log(out: Path, job: str) -> str:
    path = out / "logs" / f"train-{job}.out"
    return path.read_text(errors="replace") if path.is_file() else ""


def _run_dir(out: Path) -> Path | None:
    return next((p.parent for p in (out / "runs").glob("*/checkpoints")), None)


def _step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def _requeues(job: str, env: dict[str, str]) -> int:
    ctld = Path(env["SLURM_CONF"]).parent / "log" / "slurmctld.log"
    return ctld.read_text(errors="replace").count(f"Requeuing JobId={job}\n")


def _wait_training(out: Path, job: str, after_step: int, env: dict[str, str]) -> None:
    """Until this attempt has written a periodic checkpoint past `after_step` (training is under way)."""
    deadline = time.monotonic() + START_S
    while True:
        run = _run_dir(out)
        steps = [int(p.stem.split("-")[1]) for p in run.glob("checkpoints/step-*.ckpt")] if run else []
        if any(step > after_step for step in steps):
            return
        state = job_info(job, env).get("JobState")
        if state not in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED") or time.monotonic() > deadline:
            raise RuntimeError(f"job {job} ({state}) wrote no checkpoint past step {after_step} in time")
        time.sleep(0.005)


def _signal_attempt(attempt: Attempt, job: str, pids: dict[int, int], env: dict[str, str]) -> float:
    """The attempt's signals up to the requeue checkpoint's save; returns when the first was sent."""
    time.sleep(attempt.delay)
    sent = time.monotonic()
    if attempt.mode == "job":
        attempt.signals += usr1("job", job, pids, env)
    else:
        attempt.signals += usr1(str(attempt.first), job, pids, env)
        if attempt.mode == "skew":
            time.sleep(attempt.skew)
            attempt.signals += usr1(str(1 - attempt.first), job, pids, env)
    for target, after in attempt.extra:
        time.sleep(max(0.0, sent + after - time.monotonic()))
        attempt.signals += usr1(target, job, pids, env)
    return sent


def _until_requeued(
    attempt: Attempt, job: str, pids: dict[int, int], out: Path, restarts: int, env: dict[str, str]
) -> bool:
    """Signals during and after the requeue checkpoint's save, until the job is pending again."""
    deadline = time.monotonic() + REQUEUE_S
    saved_sent = False
    polled = 0.0
    while time.monotonic() < deadline:
        run = _run_dir(out)
        if run and not attempt.in_save and any(run.glob(".hpc_ckpt_*.tmp")):
            sent = usr1("both", job, pids, env)
            attempt.in_save, attempt.signals = bool(sent), attempt.signals + sent
        if time.monotonic() - polled > 0.25:
            polled = time.monotonic()
            info = job_info(job, env)
            if (info.get("JobState"), info.get("Restarts")) == ("PENDING", str(restarts + 1)):
                return True
            if info.get("JobState") not in ("RUNNING", "COMPLETING", "REQUEUED", "PENDING"):
                attempt.problems.append(f"job {job} is {info.get('JobState')}, not requeued")
                return False
        if run and not saved_sent and attempt.in_save and not any(run.glob(".hpc_ckpt_*.tmp")):
            saved_sent = True  # the save is done: this one lands in the requeue or the exit
            attempt.signals += usr1("both", job, pids, env)
        time.sleep(0.002)
    return False


@dataclass
class SplitRun:
    """The job requeued attempt after attempt, and what its attempts have left so far."""

    job: str
    out: Path
    env: dict[str, str]
    requeued_before: int  # slurmctld's count for this id before the submit (a restarted cluster reuses ids)
    known: set[Path] = field(default_factory=set)  # the requeue checkpoints seen so far
    resumed_step: int = 0


def _attempt(number: int, attempt: Attempt, run: SplitRun, schedule: list[Attempt]) -> bool:
    """Attempt `number`: its signals and checks; False if the job was not requeued (a deadlock or a
    failure: the run stops)."""
    job, env = run.job, run.env
    _wait_training(run.out, job, run.resumed_step, env)
    if number:
        schedule[number - 1].resumed = _resumed(schedule[number - 1], run.out, job, number, run.known)
    pids = task_pids(job, env)
    sent = _signal_attempt(attempt, job, pids, env)
    if not _until_requeued(attempt, job, pids, run.out, number, env):
        if not attempt.problems:
            attempt.problems.append(f"not requeued {REQUEUE_S} s after the first signal (deadlock)")
            subprocess.run(["scancel", "--signal=ABRT", job], env=env, timeout=30)
            time.sleep(5)  # the stacks reach the job log
        return False
    attempt.requeue_s = round(time.monotonic() - sent, 2)
    new = set(_run_dir(run.out).glob("hpc_ckpt_*.ckpt")) - run.known
    if len(new) != 1:
        attempt.problems.append(f"{len(new)} new requeue checkpoints: {sorted(p.name for p in new)}")
    requeues = _requeues(job, env) - run.requeued_before
    if requeues != number + 1:
        attempt.problems.append(f"slurmctld requeued the job {requeues} times, not {number + 1}")
    if len(new) == 1:
        [path] = new
        attempt.saved_step = run.resumed_step = _step(path)
        run.known.add(path)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+2"], env=env, check=True, timeout=30)
    return True


def run_requeues(attempts: int, seed: int, workdir: Path) -> dict[str, Any]:
    """The attempts on the live cluster; {"skipped": why} where SLURM cannot run here."""
    started = time.monotonic()
    try:
        env = {**cluster_up(), "PYTHONUNBUFFERED": "1"}
    except ClusterUnavailable as err:
        return {"skipped": str(err)}
    steps = STEPS_PER_ATTEMPT * attempts
    shards = _build_shards(workdir)
    straight, split = workdir / "straight", workdir / "split"
    schedule = plan(attempts, seed)
    job = _submit(shards, straight, steps, env)
    if wait_job(job, env, 900)["JobState"] != "COMPLETED":
        schedule[0].problems.append(f"the straight run (job {job}) failed: its log is in {straight / 'logs'}")
        return _summary(schedule, straight, split, steps, time.monotonic() - started)
    job = _submit(shards, split, steps, env)
    run = SplitRun(job, split, env, _requeues(job, env))
    try:
        for number, attempt in enumerate(schedule):
            try:
                if not _attempt(number, attempt, run, schedule):
                    break
            except (RuntimeError, TimeoutError, subprocess.SubprocessError) as err:
                attempt.problems.append(str(err))
                break
        else:
            info = wait_job(job, env, 900)
            schedule[-1].resumed = _resumed(schedule[-1], split, job, attempts, run.known)
            if info["JobState"] != "COMPLETED":
                schedule[-1].problems.append(f"the last attempt ended {info['JobState']}")
    finally:
        subprocess.run(["scancel", job], env=env, capture_output=True, timeout=30)
    return _summary(schedule, straight, split, steps, time.monotonic() - started)


def _resumed(attempt: Attempt, out: Path, job: str, restart: int, known: set[Path]) -> bool:
    """Whether attempt `restart` resumed from the checkpoint the attempt before it saved."""
    log = _log(out, job)
    newest = max(known, key=lambda p: int(p.stem.split("_")[-1]), default=None)
    ok = (
        newest is not None
        and f"(restart {restart})" in log
        and f"resuming from {newest}" in log
        and f"Restored all states from the checkpoint at {newest}" in log
    )
    if not ok:
        attempt.problems.append(f"restart {restart} did not resume from {newest}")
    return ok


def _final_equal(straight: Path, split: Path, steps: int) -> bool:
    a, b = (_run_dir(out) / "checkpoints" / "last.ckpt" for out in (straight, split))
    if not (a.is_file() and b.is_file()):
        return False
    weights_a, weights_b = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    return (
        weights_a["global_step"] == weights_b["global_step"] == steps
        and weights_a["state_dict"].keys() == weights_b["state_dict"].keys()
        and all(
            torch.allclose(v, weights_b["state_dict"][k], atol=1e-6)
            for k, v in weights_a["state_dict"].items()
        )
    )


def _summary(
    schedule: list[Attempt], straight: Path, split: Path, steps: int, seconds: float
) -> dict[str, Any]:
    times = [a.requeue_s for a in schedule if a.requeue_s is not None]
    deadlocks = sum(any("(deadlock)" in p for p in a.problems) for a in schedule)
    done = all(a.requeue_s is not None for a in schedule)
    final_equal = done and _final_equal(straight, split, steps)
    problems = [f"attempt {n}: {p}" for n, a in enumerate(schedule) for p in a.problems]
    if done and not final_equal:
        problems.append(f"the final weights differ from the straight run's ({split}, {straight})")
    return {
        "signals": sum(a.signals for a in schedule),
        "requeues": len(times),
        "checkpoints": sum(a.saved_step is not None for a in schedule),
        "resumed_at_saved_step": sum(a.resumed for a in schedule),
        "deadlocks": deadlocks,
        "max_requeue_s": max(times, default=0.0),
        "final_equal": final_equal,
        "problems": problems,
        "attempts": [a.__dict__ for a in schedule],
        "seconds": round(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 attempts (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the signals' ways, moments and skews")
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="requeue-") as tmp:
        summary = run_requeues(5 if args.quick else 10, args.seed, args.workdir or Path(tmp))
    if "skipped" in summary:
        print(f"requeue: skipped, no SLURM cluster: {summary['skipped']}")
        print("RESULT signals=0 requeues=0 skipped=1")
        return
    print(
        f"{'#':>2}  {'way':<5} {'delay':>5} {'skew':>5} {'extra':>5} {'signals':>7} {'in save':<7} "
        f"{'step':>4} {'requeue s':>9}  resumed"
    )
    for number, a in enumerate(summary["attempts"]):
        print(
            f"{number:>2}  {a['mode']:<5} {a['delay']:>5.2f} {a['skew'] if a['mode'] == 'skew' else '-':>5} "
            f"{len(a['extra']):>5} {a['signals']:>7} {'yes' if a['in_save'] else '-':<7} "
            f"{a['saved_step'] if a['saved_step'] is not None else '-':>4} {a['requeue_s'] or '-':>9}  "
            f"{'yes' if a['resumed'] else '-'}"
        )
    for problem in summary["problems"]:
        print(f"problem: {problem}")
    print(f"requeue: {len(summary['attempts'])} attempts in {summary['seconds']} s")
    print(
        f"RESULT signals={summary['signals']} requeues={summary['requeues']} "
        f"checkpoints={summary['checkpoints']} resumed_at_saved_step={summary['resumed_at_saved_step']} "
        f"deadlocks={summary['deadlocks']} max_requeue_s={summary['max_requeue_s']} "
        f"final_equal={int(summary['final_equal'])}"
    )
    if summary["problems"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
