"""`action100m prefetch` against a real local hub (action100m/testing/fake_hub.py, HF_ENDPOINT pointing at
it) serving tiny repos under the paper's model names, with the HF cache in tmp; then builds that start
offline (HF_HUB_OFFLINE=1) from that cache, and builds that stop at start, in one line, when a file is
missing and the hub cannot be used."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.cluster.prefetch import (
    MODEL,
    TOKENIZER,
    FileSet,
    check_build_files,
    fetch,
    file_sets,
    select_files,
)
from action100m.config import CONFIG_DIR
from action100m.errors import ConfigError
from action100m.synth.generate import generate_dataset
from action100m.testing.fake_hub import FakeHub
from action100m.tiny.backends import tiny_bpe_llm
from action100m.tiny.models import tiny_vjepa2
from data_build.run import run_build
from tests.data_build.test_build import build_config

ROOT = Path(__file__).resolve().parents[2]
VJEPA2, GPT_OSS = "facebook/vjepa2-vitg-fpc64-384", "openai/gpt-oss-120b"
LLAMA_VISION, PLM = "meta-llama/Llama-3.2-11B-Vision-Instruct", "facebook/Perception-LM-3B"
# build=tiny with the paper's V-JEPA 2 and tokenizer names (tiny ones behind them, from the local hub)
# and SynthActions' ground-truth captions: segment and refine load from the hub cache, nothing else.
OFFLINE_BUILD = [
    "build=tiny",
    "segment.features=vjepa2",  # (tests.data_build's build_config sets pixel features)
    f"segment.model={VJEPA2}",
    "caption.mode=synthetic",
    f"refine.prompt.tokenizer={GPT_OSS}",
    "refine.rounds=1",
    "progress=false",
]


def composed(*overrides: str):
    """The build config of `overrides`, composed in this process (prefetch composes it by the build
    command, `data_build/build.py --cfg job`)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("build", overrides=list(overrides))


def saved(model, folder: Path) -> dict[str, bytes]:
    model.save_pretrained(folder)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Tiny repos under the paper's names, each with files a build must never fetch beside its own."""
    root = tmp_path_factory.mktemp("repos")
    _, tokenizer = tiny_bpe_llm()
    tokenizer_files = saved(tokenizer, root / "tokenizer")
    config = json.dumps({"model_type": "llama"}).encode()
    weights = {
        "model-00001-of-00002.safetensors": b"1" * 3000,
        "model-00002-of-00002.safetensors": b"2" * 3000,
    }
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    return {
        VJEPA2: {
            **saved(tiny_vjepa2(), root / "vjepa2"),
            "README.md": b"# V-JEPA 2",
            "original/vitg.pt": b"x" * 5000,
        },
        # GPT-OSS ships its weights twice more in original/ and metal/; a tokenizer needs none of them
        GPT_OSS: {
            **tokenizer_files,
            "config.json": config,
            "generation_config.json": b"{}",
            "model.safetensors": b"w" * 4000,
            "original/model.safetensors": b"o" * 4000,
            "metal/model.bin": b"m" * 4000,
        },
        LLAMA_VISION: {
            **tokenizer_files,
            **weights,
            "model.safetensors.index.json": json.dumps(index).encode(),
            "config.json": config,
            "preprocessor_config.json": b"{}",
            "original/consolidated.pth": b"c" * 5000,
        },
        # safetensors and pickled weights both: the safetensors only
        PLM: {
            **tokenizer_files,
            "config.json": config,
            "model.safetensors": b"p" * 3000,
            "pytorch_model.bin": b"b" * 3000,
            "processor_config.json": b'{"processor": "plm"}',
            # (distinct bytes: the cache keeps one blob per content, fetched once for all its names)
            "video_preprocessor_config.json": b'{"video": "plm"}',
        },
    }


@pytest.fixture(scope="module")
def hub(repos):
    with FakeHub(repos) as server:
        yield server


def hub_env(hub: FakeHub, hf_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.pop("HF_HUB_CACHE", None)
    return {
        **env,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **extra,
    }


def prefetch(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "action100m.cli", "prefetch", *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def prefetched(hub, tmp_path_factory):
    """`action100m prefetch build=paper`, then the same command again: (HF_HOME, both runs, files sent)."""
    hf_home = tmp_path_factory.mktemp("hf")
    first = prefetch(hub_env(hub, hf_home), "build=paper")
    sent = list(hub.sent)
    second = prefetch(hub_env(hub, hf_home), "build=paper")
    return hf_home, first, second, sent


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, videos=1, seed=3)
    return root


def test_the_file_sets_of_the_presets():
    paper_cfg = composed("build=paper")
    paper = {s.key: s for s in file_sets(paper_cfg, served=True)}
    assert (paper["segment.model"].name, paper["segment.model"].files) == (VJEPA2, MODEL)
    tokenizer = paper["refine.prompt.tokenizer"]
    assert (tokenizer.name, tokenizer.files) == (GPT_OSS, TOKENIZER)
    assert paper["caption.frame_captioner"].name == LLAMA_VISION
    assert paper["caption.segment_captioner"].name == PLM
    assert (paper["refine.llm"].name, paper["refine.llm"].files) == (GPT_OSS, MODEL)
    # backends served by vLLM (kind=openai) load their weights in the server job: only --served lists them
    backends = ("caption.frame_captioner", "caption.segment_captioner", "refine.llm")
    served = {key for key in backends if OmegaConf.select(paper_cfg, f"{key}.kind").value == "openai"}
    assert {s.key for s in file_sets(paper_cfg)} == set(paper) - served
    assert all(s.tiny for s in file_sets(composed("build=tiny")))
    assert [(s.key, s.tiny) for s in file_sets(composed("build=demo"))] == [("segment.model", True)]


def test_select_files_takes_top_level_files_and_safetensors_before_pickles():
    listing = [
        "config.json",
        "tokenizer.json",
        "README.md",
        "model.safetensors",
        "pytorch_model.bin",
        "original/model.safetensors",
        "processor_config.json",
    ]
    assert select_files(listing, MODEL) == [
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
    ]
    assert select_files(listing, TOKENIZER) == ["config.json", "tokenizer.json"]
    assert select_files(["config.json", "pytorch_model.bin"], MODEL) == ["config.json", "pytorch_model.bin"]


def test_prefetch_downloads_what_the_build_needs_once(prefetched, repos):
    hf_home, first, second, sent = prefetched
    assert first.returncode == 0, first.stderr
    cfg = composed("build=paper")
    sets = file_sets(cfg)
    lines = first.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [s.key for s in sets]  # one line per set
    expected = {f"{s.name}/{f}" for s in sets for f in select_files(repos[s.name], s.files)}
    assert sorted(sent) == sorted(expected)  # each file once, and nothing the build never reads
    assert f"{GPT_OSS}/model.safetensors" not in sent and f"{VJEPA2}/original/vitg.pt" not in sent
    assert all("downloaded" in line for line in lines)
    # the second run downloads nothing and says so, one line per set
    assert second.returncode == 0, second.stderr
    again = second.stdout.strip().splitlines()
    assert len(again) == len(sets) and all(
        line.endswith("all in the cache: nothing to download") for line in again
    )
    snapshot = next((hf_home / "hub" / "models--openai--gpt-oss-120b" / "snapshots").iterdir())
    assert sorted(p.name for p in snapshot.iterdir()) == select_files(repos[GPT_OSS], TOKENIZER)


def test_prefetch_dry_run_served_lists_the_servers_models_and_fetches_nothing(prefetched, hub, repos):
    hf_home = prefetched[0]
    before = list(hub.sent)
    done = prefetch(hub_env(hub, hf_home), "build=paper", "--served", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert hub.sent == before
    lines = {line.split(":")[0]: line for line in done.stdout.strip().splitlines()}
    assert set(lines) == {s.key for s in file_sets(composed("build=paper"), served=True)}
    # the served GPT-OSS needs its weights and generation config beside the tokenizer already fetched
    assert lines["refine.llm"].endswith("2 to download (4.0 kB)"), lines["refine.llm"]
    assert lines["refine.prompt.tokenizer"].endswith("0 to download (0 B)")


def test_prefetch_names_the_key_and_repo_when_the_hub_has_no_such_repo(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    with pytest.raises(ConfigError) as failed:
        fetch(FileSet("segment.model", "nobody/nothing", None, MODEL))
    assert str(failed.value).startswith("segment.model: nobody/nothing: RepositoryNotFoundError")
    assert "\n" not in str(failed.value)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_offline_build_starts_from_the_prefetched_cache(prefetched, synth, tmp_path):
    hf_home = prefetched[0]
    env = hub_env_offline(hf_home)
    command = [
        sys.executable,
        str(ROOT / "data_build" / "build.py"),
        f"input={synth / 'manifest.jsonl'}",
        f"output={tmp_path / 'out'}",
        *OFFLINE_BUILD,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    [marker] = (tmp_path / "out" / "shards").glob("*.done")
    stats = json.loads(marker.read_text())["stats"]
    assert stats["videos"] == 1 and stats["annotated_nodes"] > 0, stats


def hub_env_offline(hf_home: Path) -> dict[str, str]:
    # no HF_ENDPOINT: an offline build never asks the hub
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HUB_CACHE")}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def hub_cache(prefetched, tmp_path, monkeypatch):
    """A copy of the prefetched cache that this process's huggingface_hub reads (its constants are set
    at import, so the variables are set on them), offline."""
    cache = tmp_path / "hub"
    shutil.copytree(prefetched[0] / "hub", cache, symlinks=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def build_start_error(cfg) -> str:
    with pytest.raises(ConfigError) as failed:
        run_build(cfg)
    return str(failed.value)


def test_a_missing_file_fails_the_offline_build_at_start_in_one_line(hub_cache, synth, tmp_path):
    snapshot = next((hub_cache / "models--openai--gpt-oss-120b" / "snapshots").iterdir())
    (snapshot / "tokenizer.json").unlink()
    out = tmp_path / "out"
    cfg = build_config(synth / "manifest.jsonl", out, *OFFLINE_BUILD)
    message = build_start_error(cfg)
    assert "\n" not in message
    assert message.startswith(
        f"refine.prompt.tokenizer: {GPT_OSS} lacks 1 of its 4 files in the hub cache (tokenizer.json) and "
        "HF_HUB_OFFLINE is set; run `action100m prefetch build=tiny refine.prompt.tokenizer=openai/gpt-oss-120b`"
    ), message
    assert not out.exists()  # not a video segmented: no work/ cache, not even the output folder


def test_an_uncached_model_fails_at_start_when_the_hub_lookup_fails(synth, tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on: the lookup is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    out = tmp_path / "out"
    cfg = build_config(synth / "manifest.jsonl", out, *OFFLINE_BUILD)
    message = build_start_error(cfg)
    assert message.startswith(
        f"segment.model: {VJEPA2} is not in the hub cache and the hub lookup failed: ConnectError"
    ), message
    assert "\n" not in message and not out.exists()
    # a local directory is checked to exist
    cfg = build_config(synth / "manifest.jsonl", out, *OFFLINE_BUILD[:2], "segment.model=/no/such/vjepa2")
    assert build_start_error(cfg) == "segment.model: /no/such/vjepa2 is no local directory"


def test_an_uncached_model_the_hub_answers_for_is_left_to_its_loader(hub, synth, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    said = []
    cfg = build_config(synth / "manifest.jsonl", tmp_path / "out", *OFFLINE_BUILD[:3])
    check_build_files(cfg, said.append)
    assert said == [
        f"build: segment.model: {VJEPA2} is not in the hub cache; the hub answers: it is fetched when loaded"
    ]
