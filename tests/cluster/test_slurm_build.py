"""`bash slurm/build.sh` on the live cluster's CPU partition: a job array that builds, and a task that
says at once what it waits for."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from action100m.cluster.slurm import ROOT, job_info, sbatch, wait_job
from action100m.synth.generate import generate_dataset

pytestmark = pytest.mark.cluster

SERVERS = "FRAME_CAPTIONER_URL=http://127.0.0.1:9/v1\nSEGMENT_CAPTIONER_URL=http://127.0.0.1:9/v1\nLLM_URL=http://127.0.0.1:9/v1\n"


def submit(env: dict, tmp_path: Path, *args: str, **settings: str) -> str:
    return sbatch(
        ["bash", str(ROOT / "slurm" / "build.sh"), *args],
        {**env, "DEVICE": "cpu", "CPUS": "1", "MEM": "3000", "TIME": "10:00", **settings},
        cwd=tmp_path,
    )


def logs(folder: Path, job: str) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.glob(f"build-{job}_*.out"))}


def start_requeued(task: str, slurm_env: dict) -> None:
    """Wait until `task` is pending after its first requeue, then let it start in 2 s: SLURM holds a
    requeued job 2 min (hard-coded), and slurmd refuses a credential made in the second the previous
    one was revoked ("Job credential revoked")."""
    deadline = time.monotonic() + 60
    while (job_info(task, slurm_env).get("Restarts"), job_info(task, slurm_env).get("JobState")) != (
        "1",
        "PENDING",
    ):
        assert time.monotonic() < deadline, job_info(task, slurm_env)
        time.sleep(0.2)
    subprocess.run(
        ["scontrol", "update", f"JobId={task}", "StartTime=now+2"], env=slurm_env, check=True, timeout=30
    )


def test_a_demo_build_array_runs_on_the_cpu_partition_past_a_servers_file_it_does_not_need(
    slurm_env, tmp_path
):
    """No GPU request (the old `#SBATCH --gres=gpu:1` header: "Invalid generic resource"), and build=demo
    has no HTTP backend, so a servers file next to it is neither waited for nor handed on (the old
    overrides on its null backends: Hydra's "AssertionError: Unexpected type: None")."""
    generate_dataset(tmp_path / "synth", videos=4, seed=5, overwrite=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "servers.env").write_text(SERVERS)
    build = submit(
        slurm_env,
        tmp_path,
        "samples_per_shard=1",
        "segment.features=pixel",
        "progress=false",
        INPUT="synth/manifest.jsonl",
        OUT="out",
        BUILD="demo",
        ARRAY_SIZE="2",
    )
    waiting = submit(
        slurm_env,
        tmp_path,
        INPUT="synth/manifest.jsonl",
        OUT="empty",
        BUILD="paper",
        ARRAY_SIZE="1",
        SERVERS_WAIT="3",
    )
    for task in (f"{build}_0", f"{build}_1"):
        info = wait_job(task, slurm_env, timeout=120)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), (
            info,
            logs(tmp_path / "logs", build),
        )
    for name, log in logs(tmp_path / "logs", build).items():
        assert (
            "build=demo has no backend at caption.frame_captioner caption.segment_captioner refine.llm: "
            "not waiting for out/servers.env" in log
        ), (name, log)
        assert "http." not in log
    # the two tasks built the 4 one-video shards between them
    assert len(list((tmp_path / "out" / "shards").glob("*.tar.done"))) == 4
    assert sum(json.loads(p.read_text())["samples"] for p in (tmp_path / "out" / "shards").glob("*.done")) > 0

    # build=paper without its servers file: the task says at once what it waits for, then gives up
    info = wait_job(f"{waiting}_0", slurm_env, timeout=120)
    [log] = logs(tmp_path / "logs", waiting).values()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0", (info, log)
    assert (
        log.splitlines()[0] == "build task 0: waiting for empty/servers.env (slurm/serve_vllm.sh writes it "
        "once its servers answer): 0 s of 3 s"
    )
    assert (
        log.splitlines()[-1] == "slurm/build.sh: error: empty/servers.env: no servers file (start "
        "slurm/serve_vllm.sh with the same OUT, or set SERVERS_FILE=)"
    )


def test_a_task_requeued_by_the_time_limit_signal_keeps_its_first_log(slurm_env, tmp_path):
    """USR1 to the batch shell (--signal=B:USR1@120) requeues the task; --open-mode=append keeps the
    first attempt's lines in the log (they were truncated before)."""
    task = (
        submit(
            slurm_env, tmp_path, INPUT="m.jsonl", OUT="empty", BUILD="paper", ARRAY_SIZE="1", SERVERS_WAIT="6"
        )
        + "_0"
    )
    log = tmp_path / "logs" / f"build-{task}.out"
    deadline = time.monotonic() + 60
    while "waiting for" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, job_info(task, slurm_env)
        time.sleep(0.2)
    subprocess.run(["scancel", "--batch", "--signal=USR1", task], env=slurm_env, check=True, timeout=30)
    start_requeued(task, slurm_env)
    info = wait_job(task, slurm_env, timeout=90)
    text = log.read_text()
    assert (info["JobState"], info["Restarts"]) == ("FAILED", "1"), (info, text)
    assert "build task 0: time limit near, requeueing" in text
    assert text.count("build task 0: waiting for empty/servers.env") == 2, text  # both attempts


def test_a_task_whose_servers_stay_down_requeues_itself_then_stops_saying_so(slurm_env, tmp_path):
    """The builder's exit 3 (retryable failures: its servers stayed down) requeues the task after
    REQUEUE_DELAY, MAX_REQUEUES times; then it stops with a line saying so. A stand-in builder exits 3
    at once: a real one would first wait http.breaker_wait_s for its servers."""
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'case " $* " in *" --configured-backends "*) echo refine.llm; exit 0 ;; *" -c "*) exit 0 ;; esac\n'
        'echo "builder run $((${SLURM_RESTART_COUNT:-0} + 1))"\n'
        "exit 3\n"
    )
    python.chmod(0o755)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "servers.env").write_text("LLM_URL=http://127.0.0.1:9/v1\n")
    settings = dict(INPUT="m.jsonl", OUT="out", ARRAY_SIZE="1", MAX_REQUEUES="1", REQUEUE_DELAY="1")
    task = submit(slurm_env, tmp_path, PYTHON=str(python), **settings) + "_0"
    start_requeued(task, slurm_env)
    info = wait_job(task, slurm_env, timeout=90)
    text = (tmp_path / "logs" / f"build-{task}.out").read_text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("FAILED", "3:0", "1"), (info, text)
    lines = [line for line in text.splitlines() if line.startswith(("builder run", "build task 0: servers"))]
    assert lines == [
        "builder run 1",
        "build task 0: servers down (exit 3): requeue 1 of 1 in 1 s",
        "builder run 2",
        "build task 0: servers down (exit 3) after 1 requeue(s), MAX_REQUEUES=1: stopping; submit again "
        "(TASKS=0) once the servers answer",
    ], text
