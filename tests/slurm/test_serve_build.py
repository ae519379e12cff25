"""slurm/serve_vllm.sh's per-model settings and vLLM version check, and slurm/build.sh handing the
servers file to every backend, through their dry runs (and a stand-in `vllm` executable)."""

import os
import stat
import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from data_build.config import BuildConfig  # registers the build schema

SLURM = Path(__file__).resolve().parents[2] / "slurm"
SERVERS = (
    "FRAME_CAPTIONER_URL=http://gpu1:8000/v1\nSEGMENT_CAPTIONER_URL=http://gpu1:8001/v1\n"
    "LLM_URL=http://gpu2:8002/v1\n"
)
JOB = {
    "SLURM_JOB_ID": "42",
    "SLURM_JOB_NODELIST": "gpu1,gpu2",
    "GPUS_PER_NODE": "2",
    "SERVE": "frame_captioner,segment_captioner,llm",
}


def run(script: str, *args: str, **env: str) -> tuple[int, str, str]:
    # only PATH from outside: a variable the scripts read (OUT, SLURM_*, VLLM_*) must not leak in
    command = ["bash", str(SLURM / script), *args]
    result = subprocess.run(command, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


def servers_started(out: str) -> dict[str, list[str]]:
    """The `vllm serve` options of each server a dry run would start, by model."""
    started = {}
    for line in out.splitlines():
        if line.startswith("srun "):
            words = line.split(" ")
            serve = words.index("serve")
            started[words[serve + 1]] = words[serve + 2 :]
    return started


def option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def test_every_server_gets_a_max_model_len_and_gpt_oss_its_reasoning_parser(tmp_path):
    code, out, err = run("serve_vllm.sh", "--dry-run", OUT=str(tmp_path), **JOB)
    assert code == 0, err
    assert out.splitlines()[0] == "would check that `vllm --version` is 0.32.0"
    started = servers_started(out)
    lengths = {model: option(words, "--max-model-len") for model, words in started.items()}
    assert lengths == {
        "meta-llama/Llama-3.2-11B-Vision-Instruct": "8192",
        "facebook/Perception-LM-3B": "16384",
        "openai/gpt-oss-120b": "32768",
    }
    parsers = {model: option(words, "--reasoning-parser") for model, words in started.items()}
    assert parsers == {
        "meta-llama/Llama-3.2-11B-Vision-Instruct": None,
        "facebook/Perception-LM-3B": None,
        "openai/gpt-oss-120b": "openai_gptoss",
    }

    # Settings per server; the *_ARGS come last, so that vLLM takes theirs.
    more = {
        "LLM_MAX_LEN": "65536",
        "LLM_MODEL": "openai/gpt-oss-20b",
        "SEGMENT_CAPTIONER_ARGS": "--max-model-len 12000",
    }
    code, out, err = run("serve_vllm.sh", "--dry-run", OUT=str(tmp_path), **JOB, **more)
    assert code == 0, err
    started = servers_started(out)
    assert option(started["openai/gpt-oss-20b"], "--max-model-len") == "65536"
    assert option(started["openai/gpt-oss-20b"], "--reasoning-parser") == "openai_gptoss"
    assert started["facebook/Perception-LM-3B"][-2:] == ["--max-model-len", "12000"]
    for env in ({"LLM_MODEL": "meta-llama/Llama-3.1-70B-Instruct"}, {"LLM_REASONING_PARSER": ""}):
        code, out, _ = run("serve_vllm.sh", "--dry-run", OUT=str(tmp_path), **JOB, **env)
        assert code == 0 and "--reasoning-parser" not in out

    code, out, err = run(
        "serve_vllm.sh", "--dry-run", OUT=str(tmp_path), **JOB, SEGMENT_CAPTIONER_MAX_LEN="16k"
    )
    assert code == 2 and out == ""
    assert (
        err.strip()
        == "slurm/serve_vllm.sh: error: SEGMENT_CAPTIONER_MAX_LEN=16k is not a positive number of tokens"
    )


def fake_vllm(folder: Path, version: str) -> Path:
    path = folder / "vllm"
    path.write_text(f"#!/usr/bin/env bash\necho 'INFO some start-up log' >&2\necho '{version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_vllm_version_is_checked_before_anything_is_served(tmp_path):
    code, out, err = run("serve_vllm.sh", "--check-version", VLLM=str(fake_vllm(tmp_path, "0.32.0+cpu")))
    assert (code, out.strip()) == (0, "vllm 0.32.0: ok"), err
    other = fake_vllm(tmp_path, "0.33.0")
    code, _, err = run("serve_vllm.sh", "--check-version", VLLM=str(other))
    assert code == 2
    assert err.strip() == (
        f"slurm/serve_vllm.sh: error: `{other} --version` says '0.33.0', not 0.32.0: "
        "pip install vllm==0.32.0, or set VLLM_VERSION=0.33.0 to serve with it anyway"
    )
    assert run("serve_vllm.sh", "--check-version", VLLM=str(other), VLLM_VERSION="0.33.0")[0] == 0
    assert run("serve_vllm.sh", "--check-version", VLLM=str(tmp_path / "none"), VLLM_VERSION="")[0] == 0
    code, _, err = run("serve_vllm.sh", "--check-version", VLLM=str(tmp_path / "none"))
    assert code == 2 and "no such executable" in err

    # Inside the job, a wrong version stops it before a single server starts.
    code, out, err = run(
        "serve_vllm.sh", OUT=str(tmp_path), **JOB, VLLM=str(other), LOG_DIR=str(tmp_path / "logs")
    )
    assert code == 2 and "says '0.33.0'" in err and "starting" not in out
    assert not (tmp_path / "logs").exists() and not (tmp_path / "servers.env").exists()


def test_every_build_backend_follows_the_servers_file(tmp_path):
    servers = tmp_path / "servers.env"
    servers.write_text(SERVERS)
    code, out, err = run(
        "build.sh",
        "--dry-run",
        INPUT="m.jsonl",
        OUT=str(tmp_path),
        SLURM_ARRAY_TASK_ID="0",
        SLURM_ARRAY_TASK_COUNT="1",
    )
    assert code == 0, err
    [line] = out.splitlines()
    overrides = [
        word.strip("'") for word in line.split(" ")[2:]
    ]  # after "python data_build/build.py", unquoted
    for key, role in (
        ("caption.frame_captioner", "FRAME_CAPTIONER"),
        ("caption.segment_captioner", "SEGMENT_CAPTIONER"),
        ("refine.llm", "LLM"),
    ):
        assert f"{key}.http.servers_file={servers}" in overrides
        assert f"{key}.http.servers_key={role}_URL" in overrides
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg: BuildConfig = OmegaConf.to_object(
            compose("build", overrides=overrides)
        )  # as the builder takes them
    assert cfg.refine.llm.http.servers_file == str(servers) and cfg.refine.llm.http.servers_key == "LLM_URL"
    assert cfg.caption.segment_captioner.http.base_urls == ["http://gpu1:8001/v1"]


def test_every_replica_in_the_servers_file_reaches_the_backend_as_one_list(tmp_path):
    """Several lines per key (serve_vllm.sh's replicas) become one Hydra list, not a sweep over commas."""
    servers = tmp_path / "servers.env"
    # (a dry run hands on all three keys: the captioners' lines too)
    captioners = SERVERS.replace("LLM_URL=http://gpu2:8002/v1\n", "")
    servers.write_text(
        "LLM_URL=http://gpu1:8002/v1\nLLM_URL=http://gpu1:8102/v1\nLLM_URL=http://gpu2:8202/v1,http://gpu2:8302/v1\n"
        + captioners
    )
    task = dict(INPUT="m.jsonl", OUT=str(tmp_path), SLURM_ARRAY_TASK_ID="0", SLURM_ARRAY_TASK_COUNT="1")
    code, out, err = run("build.sh", "--dry-run", **task)
    assert code == 0, err
    [line] = out.splitlines()
    overrides = [word.strip("'") for word in line.split(" ")[2:]]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg: BuildConfig = OmegaConf.to_object(compose("build", overrides=overrides))
    assert cfg.refine.llm.http.base_urls == [
        "http://gpu1:8002/v1",
        "http://gpu1:8102/v1",
        "http://gpu2:8202/v1",
        "http://gpu2:8302/v1",
    ]
    assert cfg.caption.frame_captioner.http.base_urls == ["http://gpu1:8000/v1"]

    servers.write_text(SERVERS + "LLM_URL=http://gpu3:8002/v1]\n")
    code, out, err = run("build.sh", "--dry-run", **task)
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"slurm/build.sh: error: {servers}: LLM_URL=http://gpu3:8002/v1] is not an http(s) address"
    )
