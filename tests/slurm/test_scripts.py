"""The SLURM scripts parse, and their dry runs print the commands a cluster would run."""

import os
import subprocess
from pathlib import Path

import pytest

SLURM = Path(__file__).resolve().parents[2] / "slurm"
VENV = SLURM.parent / ".venv" / "bin" / "python"
PYTHON = str(VENV) if VENV.exists() else "python"  # the scripts' default interpreter
SERVERS = "FRAME_CAPTIONER_URL=http://gpu1:8000/v1\nSEGMENT_CAPTIONER_URL=http://gpu1:8001/v1\nLLM_URL=http://gpu2:8002/v1\n"


def run(script, *args, **env):
    # only PATH from outside: a variable the scripts read (INPUT, OUT, SLURM_*, ...) must not leak in
    command = ["bash", str(SLURM / script), *args]
    result = subprocess.run(command, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("script", ["build.sh", "serve_vllm.sh"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True).returncode == 0


def test_build_submits_an_array_that_requeues(tmp_path):
    code, out, err = run(
        "build.sh",
        "--dry-run",
        "batch_videos=4",
        INPUT="m.jsonl",
        OUT=str(tmp_path),
        ARRAY_SIZE="8",
        MAX_RUNNING="2",
        PARTITION="gpu",
        TIME="2:00:00",
    )
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith("sbatch ") and line.endswith("/slurm/build.sh batch_videos=4")
    for option in [
        "--array=0-7%2",
        "--requeue",
        "--signal=B:USR1@120",
        "--partition=gpu",
        "--time=2:00:00",
        "--output=logs/build-%A_%a.out",
        "PARTITION_COUNT=8",
        "--open-mode=append",
        "--gres=gpu:1",
    ]:
        assert option in line.split(" ") or f",{option}" in line, option


def test_build_asks_for_no_gpu_on_a_cpu_partition(tmp_path):
    header = [line for line in (SLURM / "build.sh").read_text().splitlines() if line.startswith("#SBATCH")]
    assert header and not [line for line in header if "gpu" in line or "gres" in line], header
    assert "#SBATCH --open-mode=append" in header
    for env in ({"GPUS": "0"}, {"DEVICE": "cpu"}):
        code, out, err = run("build.sh", "--dry-run", INPUT="m.jsonl", OUT=str(tmp_path), **env)
        assert code == 0, err
        assert "gres" not in out and "gpu" not in out, out
    code, _, err = run("build.sh", "--dry-run", INPUT="m.jsonl", OUT=str(tmp_path), DEVICE="tpu")
    assert code == 2 and "DEVICE must be gpu or cpu, got 'tpu'" in err


def test_build_task_runs_its_partition_against_the_servers(tmp_path):
    (tmp_path / "servers.env").write_text(SERVERS)
    code, out, err = run(
        "build.sh",
        "stages=[refine]",
        DRY_RUN="1",
        INPUT="m.jsonl",
        OUT=str(tmp_path),
        SLURM_ARRAY_TASK_ID="3",
        SLURM_ARRAY_TASK_COUNT="8",
        SLURM_JOB_ID="99",
    )
    assert code == 0, err
    [line] = out.splitlines()
    assert line.split(" ") == [
        PYTHON,
        "data_build/build.py",
        "input=m.jsonl",
        f"output={tmp_path}",
        "build=paper",
        "partition.index=3",
        "partition.count=8",
        *(
            f"{key}.http.{setting}".replace(f"{key}.http.'", f"'{key}.http.")
            for key, role, url in (
                ("caption.frame_captioner", "FRAME_CAPTIONER", "http://gpu1:8000/v1"),
                ("caption.segment_captioner", "SEGMENT_CAPTIONER", "http://gpu1:8001/v1"),
                ("refine.llm", "LLM", "http://gpu2:8002/v1"),
            )
            for setting in (
                f"'base_urls=[{url}]'",
                f"servers_file={tmp_path}/servers.env",
                f"servers_key={role}_URL",
            )
        ),
        "'stages=[refine]'",
    ]


def test_build_task_overrides_and_errors(tmp_path):
    task = {
        "INPUT": "m.jsonl",
        "OUT": str(tmp_path),
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_ARRAY_TASK_COUNT": "2",
    }
    (tmp_path / "other.env").write_text(SERVERS)
    code, out, _ = run(
        "build.sh",
        "--dry-run",
        **task,
        SERVERS_FILE=str(tmp_path / "other.env"),
        PARTITION_COUNT="64",
        LLM_KEY="llm",
        BUILD="tiny",
    )
    assert code == 0
    assert (
        "partition.count=64 " in out and " build=tiny " in out and " 'llm.http.base_urls=[http://gpu2" in out
    )
    code, out, _ = run("build.sh", "--dry-run", **task, SERVERS_FILE="")
    assert code == 0 and "base_url" not in out  # no servers: the preset's backends as configured

    code, _, err = run("build.sh", "--dry-run", **task)
    assert (
        code == 2
        and err.strip()
        == f"slurm/build.sh: error: {tmp_path}/servers.env: no servers file "
        "(start slurm/serve_vllm.sh with the same OUT, or set SERVERS_FILE=)"
    )
    (tmp_path / "servers.env").write_text("LLM_URL=http://gpu2:8002/v1\n")
    code, _, err = run("build.sh", "--dry-run", **task)
    assert code == 2 and "no FRAME_CAPTIONER_URL" in err
    code, _, err = run("build.sh", "--dry-run", OUT=str(tmp_path))
    assert code == 2 and "INPUT is not set" in err


def test_serve_submits_a_gpu_job_that_requeues_before_its_time_limit(tmp_path):
    code, out, err = run(
        "serve_vllm.sh", "--dry-run", OUT=str(tmp_path), NODES="2", GPUS_PER_NODE="8", PARTITION="h100"
    )
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith("sbatch ") and line.endswith("/slurm/serve_vllm.sh")
    assert {
        "--nodes=2",
        "--gres=gpu:8",
        "--partition=h100",
        "--requeue",
        "--signal=B:USR1@300",
        "--open-mode=append",
    } <= set(line.split(" "))
    code, out, _ = run("serve_vllm.sh", "--dry-run", OUT=str(tmp_path), REQUEUE_BEFORE="900")
    assert code == 0 and "--signal=B:USR1@900" in out.split(" ")
    code, out, err = run("serve_vllm.sh", "--dry-run", OUT=str(tmp_path), REQUEUE_BEFORE="5m")
    assert (code, out) == (2, "")
    assert err.strip() == "slurm/serve_vllm.sh: error: REQUEUE_BEFORE=5m is not a number of seconds"
    header = (SLURM / "serve_vllm.sh").read_text().splitlines()
    assert {"#SBATCH --requeue", "#SBATCH --signal=B:USR1@300"} <= set(header)


def test_serve_starts_three_servers_and_writes_their_addresses(tmp_path):
    code, out, err = run(
        "serve_vllm.sh",
        DRY_RUN="1",
        OUT=str(tmp_path),
        SLURM_JOB_ID="42",
        SLURM_JOB_NODELIST="gpu1,gpu2",
        GPUS_PER_NODE="2",
        SERVE="frame_captioner,segment_captioner,llm",
        LLM_TP="2",
        LLM_ARGS="--max-num-seqs 64",
        LLM_PORT="9000",
    )
    assert code == 0, err
    lines = out.splitlines()
    srun = (
        "srun --nodes=1 --ntasks=1 --nodelist={} --overlap env CUDA_VISIBLE_DEVICES={} vllm serve {} "
        "--host 0.0.0.0 --port {} --tensor-parallel-size {} --max-model-len {}"
    )
    assert lines[:4] == [
        "would check that `vllm --version` is 0.32.0",
        srun.format("gpu1", "0", "meta-llama/Llama-3.2-11B-Vision-Instruct", 8000, 1, 8192),
        srun.format("gpu1", "1", "facebook/Perception-LM-3B", 8001, 1, 16384),
        srun.format("gpu2", "0,1", "openai/gpt-oss-120b", 9000, 2, 32768)
        + " --max-num-seqs 256 --reasoning-parser openai_gptoss --max-num-seqs 64",
    ]
    assert lines[4:] == [
        f"would write {tmp_path}/servers.env:",
        "FRAME_CAPTIONER_URL=http://gpu1:8000/v1",
        "SEGMENT_CAPTIONER_URL=http://gpu1:8001/v1",
        "LLM_URL=http://gpu2:9000/v1",
    ]
    assert not (tmp_path / "servers.env").exists()

    code, out, err = run(
        "serve_vllm.sh", "--dry-run", OUT=str(tmp_path), SLURM_JOB_ID="42", GPUS_PER_NODE="1"
    )
    assert code == 2 and out == "" and "LLM_TP=2 is more than GPUS_PER_NODE=1" in err


def test_serve_serves_only_the_llm_by_default_in_replicas_each_on_its_gpus_and_port(tmp_path):
    """The paper preset's captioners run in the build tasks (vLLM 0.32 serves neither): SERVE=llm."""
    job = dict(OUT=str(tmp_path), SLURM_JOB_ID="42", SLURM_JOB_NODELIST="gpu[1-2]", GPUS_PER_NODE="4")
    code, out, err = run("serve_vllm.sh", "--dry-run", **job, LLM_REPLICAS="4")
    assert code == 0, err
    lines = out.splitlines()
    srun = (
        "srun --nodes=1 --ntasks=1 --nodelist={} --overlap env CUDA_VISIBLE_DEVICES={} vllm serve "
        "openai/gpt-oss-120b --host 0.0.0.0 --port {} --tensor-parallel-size 2 --max-model-len 32768 "
        "--max-num-seqs 256 --reasoning-parser openai_gptoss"
    )
    assert lines[1:] == [
        srun.format("gpu1", "0,1", 8002),
        srun.format("gpu1", "2,3", 8102),
        srun.format("gpu2", "0,1", 8202),
        srun.format("gpu2", "2,3", 8302),
        f"would write {tmp_path}/servers.env:",
        "LLM_URL=http://gpu1:8002/v1",
        "LLM_URL=http://gpu1:8102/v1",
        "LLM_URL=http://gpu2:8202/v1",
        "LLM_URL=http://gpu2:8302/v1",
    ]
    code, out, err = run("serve_vllm.sh", "--dry-run", **job, LLM_REPLICAS="5")
    assert code == 2 and "the servers need more GPUs than the job's 2 node(s) x 4" in err
    for bad, line in (
        ({"LLM_REPLICAS": "0"}, "LLM_REPLICAS=0 is not a positive number of servers"),
        ({"LLM_MAX_NUM_SEQS": "many"}, "LLM_MAX_NUM_SEQS=many is not a positive number of requests"),
        ({"LLM_PORT": "http"}, "LLM_PORT=http is not a port number"),
    ):
        code, out, err = run("serve_vllm.sh", "--dry-run", **job, **bad)
        assert (code, out, err.strip()) == (2, "", f"slurm/serve_vllm.sh: error: {line}")


def fake_task(tmp_path: Path, **env: str) -> tuple[int, str, str]:
    """A build array task (not a dry run) whose builder exits 3 (its servers stayed down), with an
    scontrol that notes its arguments in scontrol.calls."""
    (tmp_path / "servers.env").write_text("LLM_URL=http://gpu2:8002/v1\n")
    (tmp_path / "bin").mkdir(exist_ok=True)
    for name, body in {
        "python": 'case " $* " in *" --configured-backends "*) echo refine.llm ;; *" -c "*) ;; *) exit 3 ;; esac',
        "scontrol": f'echo "$*" >> {tmp_path}/scontrol.calls',
        "sleep": "exit 0",
    }.items():
        (tmp_path / "bin" / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (tmp_path / "bin" / name).chmod(0o755)
    task = {
        "PATH": f"{tmp_path}/bin:{os.environ['PATH']}",
        "PYTHON": str(tmp_path / "bin" / "python"),
        "INPUT": "m.jsonl",
        "OUT": str(tmp_path),
        "LOG_DIR": str(tmp_path / "logs"),
        "SLURM_JOB_ID": "1007",
        "SLURM_ARRAY_JOB_ID": "1000",
        "SLURM_ARRAY_TASK_ID": "7",
        "SLURM_ARRAY_TASK_COUNT": "8",
        **env,
    }
    result = subprocess.run(
        ["bash", str(SLURM / "build.sh")], env=task, capture_output=True, text=True, timeout=60
    )
    return result.returncode, result.stdout, result.stderr


def test_a_task_whose_servers_stay_down_requeues_itself_a_bounded_number_of_times(tmp_path):
    calls = tmp_path / "scontrol.calls"
    for attempt in (1, 2):
        code, out, err = fake_task(tmp_path, MAX_REQUEUES="2")
        assert code == 3, err
        assert out.splitlines()[-1] == f"build task 7: servers down (exit 3): requeue {attempt} of 2 in 120 s"
        assert calls.read_text().splitlines() == ["requeue 1007"] * attempt
    # the time limit's requeues (SLURM_RESTART_COUNT) do not count: only the outages, in LOG_DIR
    assert (tmp_path / "logs" / "build-1000_7.outages").read_text() == "2\n"
    calls.unlink()
    code, out, err = fake_task(tmp_path, MAX_REQUEUES="2", SLURM_RESTART_COUNT="2")
    assert code == 3 and not calls.exists()
    assert out.splitlines()[-1] == (
        "build task 7: servers down (exit 3) after 2 requeue(s), MAX_REQUEUES=2: stopping; "
        "submit again (TASKS=7) once the servers answer"
    )
    for setting, line in (
        ({"REQUEUE_DELAY": "soon"}, "REQUEUE_DELAY must be a number of seconds, got 'soon'"),
        ({"MAX_REQUEUES": "-1"}, "MAX_REQUEUES must be a number, got '-1'"),
    ):
        code, out, err = run("build.sh", "--dry-run", INPUT="m.jsonl", OUT=str(tmp_path), **setting)
        assert (code, out, err.strip()) == (2, "", f"slurm/build.sh: error: {line}")
