"""The canary and the failure-rate guard against a real vLLM server (the session's, serving the tiny
BPE Llama with --max-model-len 2048): a request the engine itself refuses -- more tokens asked for
than its context holds, the mismatch a preset and a server's settings can have -- stops the build
before the first video (canary) or after the batch that met it (guard), naming the role, the server,
the status and vLLM's own error."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from action100m.config import load_config
from action100m.synth.generate import generate_dataset
from data_build.cache import stage_hashes
from data_build.canary import CanaryFailed
from data_build.guard import FailureRateExceeded
from data_build.inputs import read_input
from data_build.run import Builder, run_build
from tests.engines.conftest import NAME

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1020)]
TOO_MANY = 4096  # max_tokens over the server's 2,048-token context: vLLM answers 400


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, videos=2, seed=3)
    return root


def smoke_config(synth: Path, out: Path, server: str, *overrides: str):
    """build=cluster_smoke (synthetic captions, refinement through vLLM) against the session server."""
    cfg = load_config(
        "build",
        [
            f"input={synth / 'manifest.jsonl'}",
            f"output={out}",
            "build=cluster_smoke",
            "progress=false",
            f"refine.llm.model={NAME}",
            f"refine.llm.http.base_url={server}",
            "refine.llm.http.max_retries=0",
            *overrides,
        ],
    )
    return OmegaConf.to_object(cfg)


def test_the_canary_passes_a_server_that_takes_the_request(server, synth, tmp_path):
    cfg = smoke_config(synth, tmp_path / "out", server)
    entries, input_hash = read_input(cfg)
    Builder(cfg, tmp_path / "out", stage_hashes(cfg, input_hash)).canary(entries)  # raises if refused


def test_a_request_the_engine_refuses_stops_the_build_at_the_canary(server, synth, tmp_path):
    out = tmp_path / "out"
    cfg = smoke_config(synth, out, server, f"refine.llm.generation.max_new_tokens={TOO_MANY}")
    with pytest.raises(CanaryFailed) as raised:
        run_build(cfg)
    message = str(raised.value)
    assert f"canary: refine.llm ({NAME}) at {server}" in message and "HTTP 400" in message
    assert "2048" in message  # vLLM's own words: the model's context length
    assert not (out / "work" / "videos").exists() and not list(out.glob("shards/*"))


def test_without_the_canary_the_guard_stops_the_first_batch(server, synth, tmp_path):
    out = tmp_path / "out"
    cfg = smoke_config(synth, out, server, f"refine.llm.generation.max_new_tokens={TOO_MANY}", "canary=false")
    with pytest.raises(FailureRateExceeded, match=rf"refine\.llm at {server}: \d+ of \d+ .*HTTP 400"):
        run_build(cfg)
    assert not list(out.glob("shards/*.done"))
