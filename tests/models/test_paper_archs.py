"""The published architectures give the published parameter counts (the GPU benchmark's own run:
tests/engines/test_gpu_bundle.py)."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, VJEPA2Model

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
