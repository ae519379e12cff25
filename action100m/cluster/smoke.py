"""`make cluster-smoke`: the cluster path through the real engines, on this machine's CPUs.

On a live one-node SLURM cluster (engines/slurm_cluster.sh): `slurm/serve_vllm.sh` serves a tiny LLM
with a real vLLM server (CPU mode), `slurm/build.sh` builds SynthActions shards as a 2-task job array
that refines through that server (3 Self-Refine rounds, the JSON schema as `response_format`),
`slurm/train.sh` trains a tiny VL-JEPA as a 2-task gloo DDP job that SLURM's time-limit signal forces
through one requeue, then `eval.py zero_shot=synth` on its checkpoint and `action100m report scaling`.
Job logs, shards, checkpoints and results land under one folder; every figure of the RESULT line is
read from those artifacts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from action100m.cluster.slurm import ROOT, cluster_up, job_info, sbatch, wait_job
from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import read_tar
from action100m.errors import Action100MError
from action100m.models.checkpoint import read_checkpoint
from action100m.synth.generate import generate_dataset
from action100m.tiny.backends import tiny_llm_dir
from action100m.utils.atomic import write_json_atomic

VIDEOS, BENCHMARK_CLIPS, BUILD_TASKS, TRAIN_STEPS, REQUEUE_AFTER_STEP = 12, 56, 2, 16, 8
# The refine prompt of a SynthActions node takes up to ~1,900 of the tiny BPE's tokens (configs/build/
# cluster_smoke.yaml: token_budget 2,560, then an earlier answer, a repair and the reply).
MAX_MODEL_LEN = 4096
TRAIN = [
    "logger=csv",
    "trainer.progress_bar=false",
    "data.batch_size=4",
    "data.num_workers=1",
    "data.epoch_batches=4",
    "data.shuffle_buffer=40",
    f"trainer.max_steps={TRAIN_STEPS}",
    f"checkpoint.every_n_steps={REQUEUE_AFTER_STEP}",
    "optim.lr=1e-3",
]


class SmokeError(Action100MError):
    """A step of the smoke failed; the message names it and its log."""


def _say(message: str) -> None:
    print(f"[cluster-smoke] {message}", flush=True)


def _wait_for(what: str, ready: Any, timeout: float, job: str | None = None, env: dict | None = None) -> None:
    """Polls `ready()` until true; fails after `timeout` s, or at once when `job` has ended."""
    deadline = time.monotonic() + timeout
    while not ready():
        state = job_info(job, env).get("JobState") if job else None
        if state not in (None, "PENDING", "RUNNING", "CONFIGURING", "REQUEUED"):
            raise SmokeError(f"{what}: job {job} is {state}")
        if time.monotonic() > deadline:
            raise SmokeError(f"{what}: not after {timeout:g} s")
        time.sleep(0.5)


def _completed(job: str, env: dict, timeout: float, what: str, logs: Path) -> dict[str, str]:
    info = wait_job(job, env, timeout)
    if info.get("JobState") != "COMPLETED":
        raise SmokeError(
            f"{what}: job {job} ended {info.get('JobState')} (exit {info.get('ExitCode')}); logs in {logs}"
        )
    return info


def _run(step: str, command: list[str], log: Path) -> None:
    _say(f"{step}: {' '.join(command)}")
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=900)
    if done.returncode != 0:
        raise SmokeError(f"{step} failed (exit {done.returncode}); its log: {log}")


def _records(build: Path) -> list[VideoRecord]:
    return [
        VideoRecord.from_json(files["json"])
        for tar in sorted((build / "shards").glob("*.tar"))
        for _, files in read_tar(tar)
    ]


def run_cluster_smoke(out: Path, seed: int = 0) -> dict[str, Any]:
    """The whole path; writes `<out>/result.json` and returns it."""
    out = out.resolve()
    logs, build, models = out / "logs", out / "build", out / "models"
    for folder in (logs, build, models):
        folder.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = {**cluster_up(), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "LOG_DIR": str(logs)}
    _say(f"cluster up (SLURM_CONF={env['SLURM_CONF']})")

    generate_dataset(out / "synth", videos=VIDEOS, seed=seed, benchmark_clips=BENCHMARK_CLIPS, overwrite=True)
    llm = tiny_llm_dir(models / "tiny-llm", seed=seed, max_position_embeddings=MAX_MODEL_LEN)
    _run("vLLM venv", ["bash", "engines/vllm_venv.sh"], logs / "vllm-venv.log")

    server = sbatch(
        ["bash", "slurm/serve_vllm.sh"],
        {
            **env,
            "DEVICE": "cpu",
            "SERVE": "llm",
            "LLM_MODEL": str(llm),
            "HOST": "127.0.0.1",
            "OUT": str(build),
            "CPUS_PER_NODE": "1",
            "TIME": "30:00",
            "LLM_MAX_LEN": str(MAX_MODEL_LEN),
        },
    )
    _say(f"vLLM server job {server}: waiting for {build / 'servers.env'}")
    _wait_for("the vLLM server", (build / "servers.env").is_file, 600, server, env)
    try:
        tasks = sbatch(
            [
                "bash",
                "slurm/build.sh",
                "progress=false",
                f"refine.llm.model={llm}",
                f"refine.prompt.tokenizer={llm}",
            ],  # exact token counts: the served tokenizer
            {
                **env,
                "DEVICE": "cpu",
                "CPUS": "1",
                "MEM": "4000",
                "TIME": "20:00",
                "BUILD": "cluster_smoke",
                "INPUT": str(out / "synth" / "manifest.jsonl"),
                "OUT": str(build),
                "ARRAY_SIZE": str(BUILD_TASKS),
            },
        )
        _say(f"build array {tasks}: {BUILD_TASKS} tasks through the server")
        for task in range(BUILD_TASKS):  # an array's id alone names its first task only
            _completed(f"{tasks}_{task}", env, 1200, f"build task {task}", logs)
    finally:
        subprocess.run(["scancel", server], env=env, timeout=30)
    records = _records(build)
    build_logs = sorted(logs.glob(f"build-{tasks}_*.out"))

    train_out = out / "train"
    job = sbatch(
        ["bash", "slurm/train.sh", *TRAIN],
        {
            **env,
            "SHARDS": str(build),
            "MODEL": "tiny",
            "DEVICE": "cpu",
            "TASKS_PER_NODE": "2",
            "MEM": "8000",
            "TIME": "20:00",
            "OUTPUT_DIR": str(train_out),
        },
    )
    _say(f"train job {job}: 2 gloo DDP tasks; SLURM's time-limit signal after step {REQUEUE_AFTER_STEP}")
    periodic = f"*/checkpoints/step-{REQUEUE_AFTER_STEP:07d}.ckpt"
    _wait_for("the first checkpoint", lambda: any(train_out.glob(periodic)), 900, job, env)
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True, timeout=30)
    # SLURM holds a requeued batch job back for 2 minutes; the node is free, so start it now (+2 s: a
    # start in the second of the requeue fails with "Job credential revoked")
    _wait_for(
        "the requeue",
        lambda: job_info(job, env).get("Restarts") == "1" and job_info(job, env).get("JobState") == "PENDING",
        300,
    )
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+2"], env=env, check=True, timeout=30)
    info = _completed(job, env, 900, "training", logs)
    [run_json] = list(train_out.glob("*/run.json"))
    run = json.loads(run_json.read_text(encoding="utf-8"))
    train_log = (logs / f"train-{job}.out").read_text(encoding="utf-8")

    eval_out = out / "eval"
    _run(
        "eval",
        [
            python,
            "eval.py",
            "zero_shot=synth",
            f"checkpoint={run['last_checkpoint']}",
            f"zero_shot.root={out / 'synth' / 'benchmark'}",
            f"output_dir={eval_out}",
        ],
        logs / "eval.log",
    )
    _run(
        "report",
        [
            python,
            "-m",
            "action100m.cli",
            "report",
            "scaling",
            "--runs",
            str(eval_out),
            "--out",
            str(out / "report"),
        ],
        logs / "report.log",
    )
    [eval_result] = [json.loads(p.read_text(encoding="utf-8")) for p in eval_out.rglob("result.json")]
    return _summarise(out, records, build_logs, llm, run, info, train_log, eval_result)


def _summarise(
    out: Path,
    records: list[VideoRecord],
    build_logs: list[Path],
    llm: Path,
    run: dict,
    info: dict[str, str],
    train_log: str,
    eval_result: dict,
) -> dict[str, Any]:
    refined = {
        (record.video_uid, node.node_id): node.provenance["refine"]
        for record in records
        for node in record.nodes
        if (node.provenance or {}).get("refine", {}).get("mode") == "llm"
    }
    # annotated: a valid answer whose provenance names the served model and the server that gave it
    annotated = [
        p for p in refined.values() if p["complete"] and p.get("model") == str(llm) and p.get("server")
    ]
    failures_file = out / "build" / "failures.jsonl"
    lines = failures_file.read_text(encoding="utf-8").splitlines() if failures_file.is_file() else []
    failed = {
        (f["video_uid"], f["node_id"]) for f in map(json.loads, filter(None, lines)) if f["stage"] == "refine"
    }
    rounds = {len(p["rounds"]) for p in annotated}
    # One requeue checkpoint, the run resumed from that very file, at the step it holds (the old
    # defect: three checkpoints within 16 ms, and a resume from an older one, 10 steps lost).
    hpc = sorted(Path(run["run_dir"]).glob("hpc_ckpt_*.ckpt"))
    resumed = re.findall(r"resuming from (\S+hpc_ckpt_\d+\.ckpt)", train_log)
    saved_step = None
    if len(hpc) == 1:
        saved_step = read_checkpoint(hpc[0])["global_step"]
    resumed_step_match = (
        saved_step is not None
        and resumed == [str(hpc[0])]
        and f"Restored all states from the checkpoint at {hpc[0]}" in train_log
        and saved_step >= REQUEUE_AFTER_STEP
    )
    ranks = {int(m) for m in re.findall(r"GLOBAL_RANK: (\d+)", train_log)}
    result = {
        "sbatch_build_tasks": len(build_logs),
        "videos": len(records),
        "selected_nodes": len(refined.keys() | failed),  # every node sent to the LLM
        "annotated_nodes": len(annotated),
        "refine_rounds": rounds.pop() if len(rounds) == 1 else sorted(rounds),
        "servers": sorted({p["server"] for p in annotated}),
        "train_ranks": len(ranks),
        "requeues": int(info.get("Restarts", 0)),
        "requeue_checkpoints": len(hpc),
        "saved_step": saved_step,
        "resumed_step_match": resumed_step_match,
        "final_step": run["global_step"],
        "eval_top1": eval_result["metrics"]["top1"],
    }
    write_json_atomic(out / "result.json", result)
    keys = (
        "sbatch_build_tasks",
        "selected_nodes",
        "annotated_nodes",
        "refine_rounds",
        "train_ranks",
        "requeues",
        "resumed_step_match",
        "eval_top1",
    )
    print("RESULT " + " ".join(f"{key}={result[key]}" for key in keys), flush=True)
    checks = {
        f"{BUILD_TASKS} build tasks": result["sbatch_build_tasks"] == BUILD_TASKS,
        "every node sent to the LLM annotated through the server": 0
        < result["annotated_nodes"]
        == result["selected_nodes"],
        "3 rounds each": result["refine_rounds"] == 3,
        "2 training ranks": result["train_ranks"] == 2,
        "one requeue, resumed at the saved step": result["requeues"] == 1 and result["resumed_step_match"],
        f"trained to step {TRAIN_STEPS}": result["final_step"] == TRAIN_STEPS,
    }
    missed = [name for name, ok in checks.items() if not ok]
    if missed:
        raise SmokeError(f"missed: {'; '.join(missed)} (see {out / 'result.json'})")
    return result
