"""slurm/serve_vllm.sh without a cluster: the CPU mode's commands, dry runs that never ask scontrol,
and the servers file removed however the job is stopped (fake srun and curl on PATH)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "slurm" / "serve_vllm.sh"


def fake_bin(tmp_path: Path, **scripts: str) -> str:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/usr/bin/env bash\n" + body + "\n")
        path.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def run(*args, path=None, **env):
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={"PATH": path or os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr


def test_the_header_requests_no_gpu():
    header = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    assert header and not [line for line in header if "gres" in line or "gpu" in line]


def test_a_dry_run_never_calls_scontrol(tmp_path):
    # scontrol installed but no slurmctld to ask: it fails, as Debian's does on a machine without a cluster
    path = fake_bin(
        tmp_path, scontrol="echo 'scontrol: fatal: Could not establish a configuration source' >&2; exit 1"
    )
    code, out, err = run(
        "--dry-run",
        path=path,
        OUT=str(tmp_path),
        SLURM_JOB_ID="42",
        SLURM_JOB_NODELIST="gpu[1-2]",
        GPUS_PER_NODE="2",
        SERVE="frame_captioner,segment_captioner,llm",
    )
    assert code == 0, err
    assert "LLM_URL=http://gpu2:8002/v1" in out.splitlines() and "--nodelist=gpu1" in out


@pytest.mark.parametrize(
    "nodelist, hosts",
    [("n1", ["n1"]), ("gpu[01-03,7]", ["gpu01", "gpu02", "gpu03", "gpu07"]), ("a[1-2],b", ["a1", "a2", "b"])],
)
def test_nodelists_expand_without_scontrol(tmp_path, nodelist, hosts):
    code, out, err = run(
        "--dry-run",
        path=fake_bin(tmp_path, scontrol="exit 1"),
        OUT=str(tmp_path),
        SLURM_JOB_ID="1",
        SLURM_JOB_NODELIST=nodelist,
        DEVICE="cpu",
        VLLM_VENV="/v",
        SERVE=",".join(["llm"] * 1),
    )
    assert code == 0, err
    assert f"--nodelist={hosts[0]}" in out


def test_cpu_mode_submits_without_a_gpu_request(tmp_path):
    code, out, err = run("--dry-run", OUT=str(tmp_path), DEVICE="cpu", VLLM_VENV="/v", SERVE="llm")
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith("sbatch ") and "gres" not in line and "gpu" not in line
    assert "--cpus-per-task=2" in line.split(" ")
    code, out, err = run("--dry-run", OUT=str(tmp_path), DEVICE="cpu", SERVE="llm", VLLM_VENV="")
    assert code == 2 and "bash engines/vllm_venv.sh" in err


def test_cpu_mode_serves_the_llm_on_loopback(tmp_path):
    code, out, err = run(
        "--dry-run",
        OUT=str(tmp_path),
        SLURM_JOB_ID="5",
        SLURM_JOB_NODELIST="node1",
        DEVICE="cpu",
        SERVE="llm",
        LLM_MODEL="/models/tiny",
        HOST="127.0.0.1",
        VLLM_VENV="/venvs/vllm",
        LLM_PORT="8123",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines == [
        "would check that `/venvs/vllm/bin/vllm --version` is 0.32.0",
        "srun --nodes=1 --ntasks=1 --nodelist=node1 --overlap env VLLM_HOST_IP=127.0.0.1 VLLM_VENV=/venvs/vllm "
        f"HOST=127.0.0.1 PORT=8123 MAX_MODEL_LEN=2048 READY_TIMEOUT=1800 bash {ROOT}/engines/vllm_venv.sh serve "
        "/models/tiny",
        f"would write {tmp_path}/servers.env:",
        "LLM_URL=http://127.0.0.1:8123/v1",
    ]


def test_gpu_mode_keeps_the_papers_servers_and_binds_a_given_host(tmp_path):
    code, out, err = run(
        "--dry-run",
        OUT=str(tmp_path),
        SLURM_JOB_ID="5",
        SLURM_JOB_NODELIST="g1",
        GPUS_PER_NODE="4",
        HOST="127.0.0.1",
        VLLM_VENV="",
        SERVE="frame_captioner,segment_captioner,llm",
    )
    assert code == 0, err
    assert out.count("env CUDA_VISIBLE_DEVICES=") == 3 and out.count("VLLM_HOST_IP=127.0.0.1 vllm serve") == 3
    assert "LLM_URL=http://127.0.0.1:8002/v1" in out and "--tensor-parallel-size 2" in out
    code, out, err = run("--dry-run", OUT=str(tmp_path), SERVE="llm,nope")
    assert code == 2 and "unknown role 'nope'" in err


def start_serving(tmp_path, **more):
    """The script serving (not a dry run) with a fake srun that only sleeps, a curl that succeeds and
    an scontrol that notes its arguments in scontrol.calls."""
    calls = tmp_path / "scontrol.calls"
    path = fake_bin(tmp_path, srun="exec sleep 300", curl="exit 0", scontrol=f'echo "$*" >> {calls}; echo n1')
    servers = tmp_path / "servers.env"
    env = {
        **more,
        "PATH": path,
        "OUT": str(tmp_path),
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NODELIST": "n1",
        "GPUS_PER_NODE": "4",
        "VLLM_VERSION": "",
        "VLLM_VENV": "",
        "LOG_DIR": str(tmp_path / "logs"),
        "READY_POLL_S": "0.1",
    }
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # a run started in the background inherits SIGINT ignored, which bash then cannot trap
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while not servers.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.05)
    time.sleep(0.3)  # in `wait -n` now
    return process, servers


@pytest.mark.parametrize("how", ["USR1", "TERM", "TERM to every process, twice", "INT"])
def test_the_servers_file_goes_however_the_job_is_stopped(tmp_path, how):
    process, servers = start_serving(tmp_path)
    if how.startswith("TERM to every"):  # the time limit: SLURM signals each process of the job
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(0.01)
        os.killpg(process.pid, signal.SIGTERM)
    elif how == "INT":  # Ctrl-C reaches the whole foreground process group, not the shell alone
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(getattr(signal, f"SIG{how}"))
    out = process.communicate(timeout=30)[0]
    assert not servers.exists(), out
    assert f"removed {servers}" in out
    assert not list(tmp_path.glob("servers.env.tmp.*"))


def test_a_file_another_job_wrote_is_left(tmp_path):
    process, servers = start_serving(tmp_path)
    servers.write_text("LLM_URL=http://elsewhere:1/v1\n")
    process.send_signal(signal.SIGTERM)
    out = process.communicate(timeout=30)[0]
    assert servers.exists() and "another job has written it since" in out


def test_usr1_before_the_time_limit_requeues_the_job_and_removes_the_file(tmp_path):
    process, servers = start_serving(tmp_path, LLM_REPLICAS="2")
    assert servers.read_text() == "LLM_URL=http://n1:8002/v1\nLLM_URL=http://n1:8102/v1\n"  # one line each
    process.send_signal(signal.SIGUSR1)  # --signal=B:USR1@REQUEUE_BEFORE
    out = process.communicate(timeout=30)[0]
    assert process.returncode == 138
    assert "time limit near: requeueing job 77" in out and f"removed {servers}" in out
    assert not servers.exists()
    assert "requeue 77" in (tmp_path / "scontrol.calls").read_text().splitlines()
