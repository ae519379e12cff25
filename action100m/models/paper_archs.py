"""The paper's published architectures as config data, to build them with random weights, offline.

`paper_config(name)` gives the transformers config of a published checkpoint (no download);
`quick=True` shrinks width, depth, crop and clip length for CPU smoke runs, keeping the same classes.
`write_weightless(config, folder)` writes a checkpoint folder with the config and no weights: every
loader here (`from_pretrained`, sentence-transformers) then builds the model through its own code path
and initialises all weights at random, so a benchmark measures exactly the model the trainer loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from transformers import Gemma3TextConfig, LlamaConfig, PretrainedConfig, VJEPA2Config

VITG = "facebook/vjepa2-vitg-fpc64-384"
VITL = "facebook/vjepa2-vitl-fpc64-256"
LLAMA_1B = "meta-llama/Llama-3.2-1B"
EMBEDDING_GEMMA = "google/embeddinggemma-300m"

# The checkpoints' config.json values (the predictor: VJEPA2Config's defaults, as both checkpoints use).
ARCHS: dict[str, tuple[type[PretrainedConfig], dict[str, Any]]] = {
    VITG: (
        VJEPA2Config,
        dict(
            hidden_size=1408,
            num_hidden_layers=40,
            num_attention_heads=22,
            mlp_ratio=48 / 11,  # intermediate 6144
            patch_size=16,
            tubelet_size=2,
            crop_size=384,
            frames_per_clip=64,
        ),
    ),
    VITL: (
        VJEPA2Config,
        dict(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            mlp_ratio=4.0,
            patch_size=16,
            tubelet_size=2,
            crop_size=256,
            frames_per_clip=64,
        ),
    ),
    LLAMA_1B: (
        LlamaConfig,
        dict(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500000.0,
                factor=32.0,
                high_freq_factor=4.0,
                low_freq_factor=1.0,
                original_max_position_embeddings=8192,
            ),
            tie_word_embeddings=True,
            bos_token_id=128000,
            eos_token_id=128001,
        ),
    ),
    EMBEDDING_GEMMA: (
        Gemma3TextConfig,
        dict(
            vocab_size=262144,
            hidden_size=768,
            intermediate_size=1152,
            num_hidden_layers=24,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=256,
            query_pre_attn_scalar=256,
            max_position_embeddings=2048,
            sliding_window=512,
            use_bidirectional_attention=True,
        ),
    ),
}

# CPU smoke sizes. Vocabularies stay above the bundled MiniLM tokenizer's 30,522 ids, which quick runs
# tokenise with; Llama keeps its 16 layers so the preset's layer range [8, 16) still applies.
_QUICK_VIT = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_ratio=2.0,
    crop_size=64,
    frames_per_clip=8,
)
_QUICK: dict[str, dict[str, Any]] = {
    VITG: _QUICK_VIT,
    VITL: _QUICK_VIT,
    LLAMA_1B: dict(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
    ),
    EMBEDDING_GEMMA: dict(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        head_dim=32,
        query_pre_attn_scalar=32,
    ),
}
_QUICK_VJEPA2_PREDICTOR = dict(pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1)


def paper_config(name: str, quick: bool = False, **overrides: Any) -> PretrainedConfig:
    """The config of published checkpoint `name` (one of `ARCHS`), SDPA attention, shrunk if `quick`."""
    config_class, settings = ARCHS[name]
    settings = dict(settings)
    if quick:
        settings.update(_QUICK[name])
        if config_class is VJEPA2Config:
            settings.update(_QUICK_VJEPA2_PREDICTOR)
    settings.update(overrides)
    config = config_class(**settings)
    config._attn_implementation = "sdpa"
    return config


def write_weightless(config: PretrainedConfig, folder: str | os.PathLike) -> Path:
    """A checkpoint folder with `config` and an empty weights file: loading it initialises every weight
    at random (transformers warns of the missing keys), without writing or reading real weights."""
    folder = Path(folder)
    config.save_pretrained(folder)
    save_file({}, folder / "model.safetensors", metadata={"format": "pt"})
    return folder
