"""A tiny random-init CLIP saved as a transformers folder, for tests and benchmarks (no downloads).

`encoder=clip encoder.model=FOLDER` loads it exactly as it would load `openai/clip-vit-large-patch14`,
so the baseline path runs end to end on a CPU. Its scores are meaningless; plumbing and speed are real.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from action100m.tiny.models import train_word_tokenizer


def save_tiny_clip(folder: str | Path, corpus: Iterable[str], image_size: int = 32, seed: int = 0) -> Path:
    """Train a word tokenizer on `corpus`, build a 2-layer CLIP at width 32, save both and a processor."""
    tokenizer = train_word_tokenizer(corpus)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
    )
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()
    size = {"height": image_size, "width": image_size}
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=size)
    folder = Path(folder)
    for part in (model, tokenizer, processor):
        part.save_pretrained(folder)
    return folder
