"""Trainable parameters are float32 master weights whatever dtype a pretrained part was saved in.

Llama-3.2-1B is stored in bf16 and transformers loads a checkpoint in the dtype it was saved in: AdamW
on bf16 weights at lr 5e-5 loses most updates, and bf16-mixed does not upcast them.
"""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, LlamaModel, VJEPA2Model

from action100m.models.config import PredictorConfig, XEncoderConfig, YEncoderConfig
from action100m.models.hub import model_path
from action100m.models.predictor import Predictor, load_tokenizer
from action100m.models.x_encoder import XEncoder
from action100m.models.y_encoder import YEncoder
from action100m.tiny.models import tiny_llama_config, tiny_vjepa2


def dtypes(module: torch.nn.Module, trainable_only: bool = True) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters() if p.requires_grad or not trainable_only}


@pytest.fixture(scope="module")
def bf16_llama(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("llama-bf16")
    LlamaModel(tiny_llama_config(load_tokenizer("minilm"))).to(torch.bfloat16).save_pretrained(path)
    assert dtypes(AutoModel.from_pretrained(path)) == {torch.bfloat16}  # what a plain load gives
    return str(path)


@pytest.fixture(scope="module")
def bf16_vjepa2(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vjepa2-bf16")
    tiny_vjepa2().to(torch.bfloat16).save_pretrained(path)
    assert dtypes(VJEPA2Model.from_pretrained(path)) == {torch.bfloat16}
    return str(path)


@pytest.fixture(scope="module")
def bf16_text_encoder(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("minilm-bf16")
    SentenceTransformer(model_path("minilm"), device="cpu").to(torch.bfloat16).save(str(path))
    assert dtypes(SentenceTransformer(str(path), device="cpu")) == {torch.bfloat16}
    return str(path)


def test_predictor_from_a_bf16_checkpoint_trains_in_float32(bf16_llama):
    predictor = Predictor(PredictorConfig(name=bf16_llama, layers=[0, 2]), vision_width=32, embed_dim=16)
    assert dtypes(predictor) == {torch.float32}
    assert dtypes(predictor, trainable_only=False) == {torch.float32}  # frozen embeddings too


def test_x_encoder_from_a_bf16_checkpoint_trains_in_float32(bf16_vjepa2):
    assert dtypes(XEncoder(XEncoderConfig(name=bf16_vjepa2, freeze=False))) == {torch.float32}


def test_y_encoder_from_a_bf16_checkpoint_trains_in_float32(bf16_text_encoder):
    encoder = YEncoder(YEncoderConfig(name=bf16_text_encoder, freeze=False), embed_dim=16)
    assert dtypes(encoder) == {torch.float32}
    assert encoder(["a person stirs the mixture"]).dtype == torch.float32
