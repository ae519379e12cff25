"""The live one-node SLURM cluster of engines/slurm_cluster.sh, for the `cluster` tests and `make cluster-smoke`.

    from action100m.cluster.slurm import cluster_up, sbatch, wait_job
    env = cluster_up()            # {"SLURM_CONF": ..., **os.environ}; raises ClusterUnavailable
    job = sbatch(["bash", "slurm/train.sh"], env)   # or any command that submits, printing the id

`cluster_up()` reuses a running cluster (CI starts one before `make test`); `cluster_down()` stops it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from action100m.errors import Action100MError

ROOT = Path(__file__).resolve().parents[2]  # the checkout: its scripts run from there
SCRIPT = ROOT / "engines" / "slurm_cluster.sh"
UNAVAILABLE = 3  # the script's exit status when SLURM cannot be installed or started here


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be installed or started on this machine (the reason is the message)."""


class SubmitError(Action100MError):
    """A command that should have submitted a job did not."""


def _script(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout)


def cluster_running() -> bool:
    return _script("status", 30).returncode == 0


def cluster_up(timeout: float = 180) -> dict[str, str]:
    """Starts the cluster (or finds it running) and returns os.environ with its SLURM_CONF."""
    done = _script("up", timeout)
    if done.returncode == UNAVAILABLE:
        raise ClusterUnavailable(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        raise RuntimeError(f"engines/slurm_cluster.sh up failed: {done.stderr.strip()}")
    match = re.search(r"^export SLURM_CONF=(\S+)$", done.stdout, re.M)
    if not match:
        raise RuntimeError(f"engines/slurm_cluster.sh up printed no SLURM_CONF: {done.stdout.strip()}")
    return {**os.environ, "SLURM_CONF": match.group(1)}


def cluster_down() -> None:
    _script("down", 120)


def sbatch(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    """Runs a command that submits a job (sbatch, or a script that calls it) and returns the job id."""
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    match = re.search(r"Submitted batch job (\d+)", done.stdout)
    if done.returncode != 0 or not match:
        raise SubmitError(
            f"{' '.join(command)} (exit {done.returncode}): {(done.stdout + done.stderr).strip()}"
        )
    return match.group(1)


def job_info(job: str, env: dict[str, str]) -> dict[str, str]:
    """`scontrol show job` as KEY=VALUE (empty once the controller has forgotten the job)."""
    done = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job], env=env, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", done.stdout))


def wait_job(
    job: str,
    env: dict[str, str],
    timeout: float,
    until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"),
) -> dict[str, str]:
    """Polls the job until its state is one of `until`; returns its `scontrol show job` fields."""
    deadline = time.monotonic() + timeout
    info: dict[str, str] = {}
    while time.monotonic() < deadline:
        info = job_info(job, env)
        if info.get("JobState") in until:
            return info
        time.sleep(0.5)
    raise TimeoutError(f"job {job} still {info.get('JobState')} after {timeout} s")
