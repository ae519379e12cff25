"""Secrets and unsafe loads: an API key used by a build, then a train and an eval in the same
environment, is written nowhere; and every torch.load in the project refuses pickled code."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.backends import BackendConfig, GenerationConfig, HTTPConfig
from action100m.config import CONFIG_DIR
from action100m.eval.config import register_eval_configs
from action100m.eval.run import run_eval
from action100m.synth.generate import generate_dataset
from action100m.testing.fake_server import FakeChatServer, echo
from action100m.train.config import register_train_configs
from action100m.train.run import run_training
from data_build.run import run_build
from tests.data_build.test_build_serving import FAST as SERVED_BUILD

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["action100m", "data_build", "benchmarks", "train.py", "eval.py"]
KEY_ENV = "A100M_TEST_SECRET_KEY"
KEY = "sk-test-SECRET-1234567890"
ANSWER = {
    "summary": {"brief": "A person works at a table.", "detailed": "A person works at a table with tools."},
    "action": {
        "brief": "assemble a part",
        "detailed": "Assemble a part with both hands.",
        "actor": "a person",
    },
}


def reply(messages: list[dict], response_format: dict | None = None) -> str:
    """Captions echo their prompt; refinement (the only caller sending a schema) gets a valid answer."""
    return echo(messages) if response_format is None else json.dumps(ANSWER)


def served_build(manifest: Path, out: Path, server: FakeChatServer):
    """A build whose three backends are `server`, each reading its key from KEY_ENV."""
    overrides = [f"input={manifest}", f"output={out}", *SERVED_BUILD]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("build", overrides=overrides))
    http = HTTPConfig(base_url=server.base_url, api_key_env=KEY_ENV, max_retries=0, timeout_s=10)
    backends = {"frame_captioner": "image_captioner", "segment_captioner": "video_captioner", "llm": "llm"}
    for role, interface in backends.items():
        backend = BackendConfig(
            interface=interface,
            kind="openai",
            model=server.model,
            generation=GenerationConfig(max_new_tokens=32),
            http=http,
        )
        setattr(cfg.refine if role == "llm" else cfg.caption, role, backend)
    return cfg


def compose_config(name: str, register, overrides: list[str]):
    register()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(name, overrides=overrides))


def files_holding(folder: Path, secret: bytes) -> list[str]:
    return [str(path) for path in sorted(folder.rglob("*")) if path.is_file() and secret in path.read_bytes()]


@pytest.mark.slow
def test_the_api_key_reaches_the_server_and_nothing_written(
    tmp_path, monkeypatch, capfd, caplog, offline_wandb
):
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)  # a key in any debug line would be one handler away from a file
    synth, built = tmp_path / "synth", tmp_path / "built"
    generate_dataset(synth, videos=4, seed=7, benchmark_clips=4)
    with FakeChatServer(reply=reply) as server:
        summary = run_build(served_build(synth / "manifest.jsonl", built, server))
        authorizations = {request.headers.get("Authorization") for request in server.received}
    assert summary["failures"] == 0 and summary["built"] == 2
    assert authorizations == {f"Bearer {KEY}"}  # every request carried the key: it was used

    trained = run_training(
        compose_config(
            "train",
            register_train_configs,
            [
                f"data.shards={built}",
                f"output_dir={tmp_path / 'runs'}",
                "model=tiny",
                "logger=wandb",
                "trainer.progress_bar=false",
                "trainer.max_steps=1",
                "data.batch_size=2",
                "data.num_workers=0",
                "data.epoch_batches=1",
                "data.shuffle_buffer=4",
            ],
        )
    )
    run_eval(
        compose_config(
            "eval",
            register_eval_configs,
            [
                "zero_shot=synth",
                f"zero_shot.root={synth / 'benchmark'}",
                f"checkpoint={trained['last_checkpoint']}",
                f"output_dir={tmp_path / 'eval'}",
                f"cache_dir={tmp_path / 'eval' / 'cache'}",
                "logger.wandb.enabled=true",
                "progress=false",
                "workers=0",
            ],
        )
    )

    written = {path.relative_to(tmp_path).parts[0] for path in tmp_path.rglob("*") if path.is_file()}
    assert {"built", "runs", "eval"} <= written
    assert list((tmp_path / "runs").rglob("*.ckpt")) and list((tmp_path / "runs").rglob("*.wandb"))
    assert list((tmp_path / "eval").rglob("*.wandb")) and list((tmp_path / "eval").rglob("result.json"))
    assert files_holding(tmp_path, KEY.encode()) == []
    printed = capfd.readouterr()
    assert KEY not in printed.out and KEY not in printed.err
    assert not [record.getMessage() for record in caplog.records if KEY in record.getMessage()]


def torch_loads(path: Path) -> list[tuple[int, bool]]:
    """(line, whether weights_only=True is passed) of each torch.load call in the file; a `load`
    imported from torch counts as unsafe (its calls would go unseen)."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "torch":
            calls.extend((node.lineno, False) for alias in node.names if alias.name == "load")
        func = node.func if isinstance(node, ast.Call) else None
        named = isinstance(func, ast.Attribute) and func.attr == "load"
        if named and isinstance(func.value, ast.Name) and func.value.id == "torch":
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            calls.append((node.lineno, safe))
    return calls


def test_every_torch_load_is_weights_only():
    # a pickle in a checkpoint or cache runs code on load unless weights_only=True refuses it
    paths = [
        p
        for name in SOURCES
        for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))
    ]
    found = {f"{path.relative_to(ROOT)}:{line}": safe for path in paths for line, safe in torch_loads(path)}
    assert found, "no torch.load found: the scan looks in the wrong place"
    assert [where for where, safe in found.items() if not safe] == []
