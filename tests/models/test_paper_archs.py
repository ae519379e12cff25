"""The published architectures give the published parameter counts, and the GPU benchmark's --quick
run works end to end on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, VJEPA2Model

from action100m.cli import main
from action100m.models.paper_archs import EMBEDDING_GEMMA, LLAMA_1B, VITG, VITL, paper_config

ROOT = Path(__file__).resolve().parents[2]


def build_on_meta(name: str) -> torch.nn.Module:
    """The model's modules with shapes only: counting 1B parameters allocates nothing."""
    config = paper_config(name)
    with torch.device("meta"):
        return VJEPA2Model(config) if config.model_type == "vjepa2" else AutoModel.from_config(config)


def count(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


@pytest.mark.parametrize(("name", "billions"), [(VITG, 1.012), (VITL, 0.304)], ids=["vit-g", "vit-l"])
def test_vjepa2_encoders_have_the_published_size(name, billions):
    model = build_on_meta(name)
    assert count(model.encoder) == pytest.approx(billions, abs=0.002)
    mlp = model.encoder.layer[0].mlp
    assert mlp.fc1.out_features == {VITG: 6144, VITL: 4096}[name]


def test_llama_3_2_1b_and_the_predictor_layers():
    model = build_on_meta(LLAMA_1B)
    assert count(model) == pytest.approx(1.2358, abs=0.0005)  # 1,235,814,400 with tied embeddings
    assert sum(p.numel() for layer in model.layers[8:16] for p in layer.parameters()) == 8 * 60_821_504


def test_embeddinggemma_300m():
    model = build_on_meta(EMBEDDING_GEMMA)
    assert count(model) == pytest.approx(0.303, abs=0.001)  # 308M with its two dense projections
    assert model.config.use_bidirectional_attention


@pytest.mark.slow
def test_gpu_benchmark_quick_runs_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_paper_presets.py"),
            "--quick",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    values = dict(pair.split("=", 1) for pair in last.split()[1:])
    for key in ("vitg_windows_per_s", "vitg_frames_per_s"):
        assert float(values[key]) > 0
    for stage in (1, 2, 3):
        assert float(values[f"vljepa_stage{stage}_samples_per_s"]) > 0
        # --quick caps every sweep far below what a CPU holds
        assert values[f"vljepa_stage{stage}_nockpt_stopped"] == "cap"
    data = json.loads(out.read_text())
    assert data["environment"]["quick"] is True and data["environment"]["gpu"] is None
    results = data["results"]
    assert results["vljepa_stage3_batch"] == 2 and results["vljepa_stage1_batch"] == 4
    assert results["decode_cuda"] == {"error": "skipped: no GPU"}
    # the file feeds the estimate as it is: CI's CPU run accepted with --allow-quick, and flagged
    args = ["estimate", "train", "--samples-seen", "1000", "--from", str(out), "--allow-quick"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("[measured: results.json (QUICK: reduced models)]") == 3
