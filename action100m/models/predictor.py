"""Predictor: the last decoder layers of a causal LM, run bidirectionally over vision + query tokens.

Vision tokens are projected into the LM's width and followed by the query's token embeddings (its own
tokenizer and embedding table); every position attends to every non-pad position; the outputs are
averaged over non-pad positions and a linear head maps them into the shared space.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, LlamaModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_bidirectional_mask

from action100m.errors import ConfigError
from action100m.models.config import TINY, PredictorConfig
from action100m.models.hub import MASTER_DTYPE, load_or_fail
from action100m.tiny.models import tiny_llama_config


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    tokenizer = load_or_fail(AutoTokenizer.from_pretrained, name, "predictor.tokenizer")
    if tokenizer.pad_token is None:  # Llama's has none; pad positions are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_lm(cfg: PredictorConfig, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    if cfg.name == TINY:
        tiny = cfg.tiny
        config = tiny_llama_config(
            tokenizer,
            hidden_size=tiny.hidden_size,
            intermediate_size=tiny.intermediate_size,
            num_hidden_layers=tiny.num_hidden_layers,
            num_attention_heads=tiny.num_attention_heads,
            num_key_value_heads=tiny.num_key_value_heads,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tiny.seed)
            return LlamaModel(config)
    # float32 master weights: Llama-3.2 is stored in bf16, and AdamW on bf16 weights at the paper's
    # small learning rates loses most updates; mixed precision is the trainer's job.
    lm = load_or_fail(
        lambda path: AutoModel.from_pretrained(path, dtype=MASTER_DTYPE, trust_remote_code=False),
        cfg.name,
        "predictor",
    )
    if not all(hasattr(lm, part) for part in ("layers", "embed_tokens", "norm")):
        raise ConfigError(
            f"predictor: {cfg.name!r} is not a decoder-only LM with layers and token embeddings"
        )
    return lm


class Predictor(nn.Module):
    def __init__(self, cfg: PredictorConfig, vision_width: int, embed_dim: int):
        super().__init__()
        self.tokenizer = load_tokenizer(cfg.tokenizer)
        self.max_query_tokens = cfg.max_query_tokens
        lm = _load_lm(cfg, self.tokenizer)
        first, end = cfg.layers
        if not 0 <= first < end <= len(lm.layers):
            raise ConfigError(
                f"predictor.layers: [{first}, {end}) is not a range of the LM's {len(lm.layers)} layers"
            )
        lm.layers = nn.ModuleList(lm.layers[first:end])
        lm.config.use_cache = False
        for layer in lm.layers:
            layer.self_attn.is_causal = False  # read by flash attention, which takes no explicit mask
        lm.embed_tokens.requires_grad_(not cfg.freeze_embeddings)
        self.lm = lm
        width = lm.config.hidden_size
        self.vision_proj = nn.Linear(vision_width, width)
        self.head = nn.Linear(width, embed_dim)

    def tokenize(self, queries: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(
            queries, padding=True, truncation=True, max_length=self.max_query_tokens, return_tensors="pt"
        )
        return tokens["input_ids"].to(device), tokens["attention_mask"].to(device)

    def hidden_states(
        self, vision: torch.Tensor, query_ids: torch.Tensor, query_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LM's output at every position (vision tokens, then query tokens) and the non-pad mask."""
        hidden = torch.cat([self.vision_proj(vision), self.lm.embed_tokens(query_ids)], dim=1)
        keep = torch.cat([query_mask.new_ones(vision.shape[:2]), query_mask], dim=1)
        # A prepared 4D mask is used as given, so the LM adds no causal mask on top of it.
        mask = create_bidirectional_mask(
            config=self.lm.config,
            inputs_embeds=hidden,
            attention_mask=keep,
            allow_is_bidirectional_skip=False,
        )
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        return self.lm(
            inputs_embeds=hidden, attention_mask=mask, position_ids=positions
        ).last_hidden_state, keep

    def forward(
        self, vision: torch.Tensor, query_ids: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """vision (B, N, vision_width), query ids and mask (B, Q) → (B, embed_dim), not normalised: the
        average over non-pad positions, through the head."""
        out, keep = self.hidden_states(vision, query_ids, query_mask)
        weights = keep.unsqueeze(-1).to(out.dtype)
        return self.head((out * weights).sum(dim=1) / weights.sum(dim=1))
