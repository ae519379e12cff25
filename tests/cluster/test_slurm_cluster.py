"""engines/slurm_cluster.sh: the cluster it brings up runs jobs (their output checked, not only their
state), `up` again reuses it, and every daemon listens on 127.0.0.1 only."""

import shutil
import subprocess

import pytest

from action100m.cluster.slurm import SCRIPT, sbatch, wait_job

pytestmark = pytest.mark.cluster


def test_a_batch_job_runs_two_tasks_and_writes_its_output(slurm_env, tmp_path):
    out = tmp_path / "smoke.out"
    job = sbatch(
        ["sbatch", "--ntasks=2", f"--output={out}", "--wrap", "srun -n2 bash -c 'echo task-$SLURM_PROCID'"],
        slurm_env,
    )
    info = wait_job(job, slurm_env, timeout=60)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), info
    # proctrack/cgroup without a cgroup.conf "completes" jobs that never ran: the output is the proof
    assert sorted(out.read_text().split()) == ["task-0", "task-1"]


def test_up_again_reuses_the_running_cluster_and_status_sees_it(slurm_env):
    again = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "reusing the running cluster" in again.stderr, again.stderr
    assert again.stdout.strip() == f"export SLURM_CONF={slurm_env['SLURM_CONF']}"
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.startswith("node "), status


def test_every_daemon_listens_on_127_0_0_1_only(slurm_env):
    if not shutil.which("ss"):
        pytest.skip("no ss (iproute2) to list the listening sockets")
    listening = subprocess.run(["ss", "-Hltnup"], capture_output=True, text=True, timeout=30).stdout
    daemons = [
        line
        for line in listening.splitlines()
        if any(f'"{name}"' in line for name in ("slurmctld", "slurmd", "munged"))
    ]
    assert daemons, listening
    for line in daemons:
        assert line.split()[4].startswith("127.0.0.1:"), line


def test_bad_settings_are_one_clear_line():
    done = subprocess.run(
        ["bash", str(SCRIPT), "up"],
        env={"PATH": "/usr/bin:/bin", "A100M_SLURM_CPUS": "two"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "engines/slurm_cluster.sh: error: A100M_SLURM_CPUS must be a positive number, got 'two'"
    )
    done = subprocess.run(["bash", str(SCRIPT), "sideways"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage: bash engines/slurm_cluster.sh up|down|status" in done.stderr


def test_without_root_to_install_it_the_reason_is_one_line_and_the_status_3_the_tests_skip_on(tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv to drop root")
    # as nobody, with a PATH where slurmctld/slurmd (/usr/sbin) are not found: "not installed, not root"
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "PATH=/usr/bin:/bin",
            f"A100M_SLURM_STATE={tmp_path}/state",
            "bash",
            str(SCRIPT),
            "up",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3, done.stderr
    assert (
        done.stderr.strip() == "engines/slurm_cluster.sh: error: SLURM is not installed and installing it "
        "needs root (apt-get install slurm-wlm munge)"
    )
