"""Tiny random-init models built from configs of the real classes, and a tokenizer trained in-process.

No weights are downloaded: tests and the CPU presets run the paper's model code (V-JEPA 2, Llama)
at toy sizes. Their outputs are meaningless; their shapes, plumbing and speed are real.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, VJEPA2Config, VJEPA2Model

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "<s>", "eos_token": "</s>"}


def train_word_tokenizer(corpus: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over `corpus`, wrapped for transformers."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()))
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def tiny_vjepa2_config(**overrides: Any) -> VJEPA2Config:
    """V-JEPA 2 at toy width: 32² crops, 8×8 patches, tubelets of 2 frames, 2 layers of width 32."""
    settings: dict[str, Any] = dict(
        crop_size=32,
        frames_per_clip=8,
        patch_size=8,
        tubelet_size=2,
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        mlp_ratio=2.0,
        pred_hidden_size=16,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
    )
    settings.update(overrides)
    return VJEPA2Config(**settings)


def tiny_vjepa2(seed: int = 0, **overrides: Any) -> VJEPA2Model:
    torch.manual_seed(seed)
    return VJEPA2Model(tiny_vjepa2_config(**overrides)).eval()


def tiny_text_settings(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """The text model's size every tiny language model shares: 2 layers at width 32, 4 heads (2 for keys
    and values), with `tokenizer`'s vocabulary and special tokens."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def tiny_llama_config(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> LlamaConfig:
    settings = dict(tiny_text_settings(tokenizer), max_position_embeddings=512, tie_word_embeddings=False)
    settings.update(overrides)
    return LlamaConfig(**settings)


def tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config(tokenizer, **overrides)).eval()
