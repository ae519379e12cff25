"""Y-encoder: a sentence-transformers text embedding model (its own pooling and layers) + a linear head."""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer
from torch import nn

from action100m.models.config import YEncoderConfig
from action100m.models.hub import MASTER_DTYPE, load_or_fail

CACHE_SIZE = 200_000  # texts; a frozen encoder's embeddings are reused (the same labels recur all the time)


class YEncoder(nn.Module):
    def __init__(self, cfg: YEncoderConfig, embed_dim: int):
        super().__init__()
        self.encoder = load_or_fail(
            lambda path: SentenceTransformer(
                path, device="cpu", trust_remote_code=False, model_kwargs={"dtype": MASTER_DTYPE}
            ),
            cfg.name,
            "y_encoder",
        )
        self.encoder.max_seq_length = cfg.max_tokens
        self.prompt = cfg.prompt or None
        self.frozen = cfg.freeze
        self._cache: dict[str, torch.Tensor] = {}
        if self.frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self.register_load_state_dict_post_hook(lambda module, keys: module._cache.clear())
        self.head = nn.Linear(self.encoder.get_embedding_dimension(), embed_dim)

    def train(self, mode: bool = True) -> YEncoder:
        # A frozen encoder stays in eval mode, so its output for a text never changes and can be cached.
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = self.head.weight.device
        features = self.encoder.preprocess(texts, prompt=self.prompt)
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return self.encoder(features)["sentence_embedding"]

    def _encode_frozen(self, texts: list[str]) -> torch.Tensor:
        if len(self._cache) + len(texts) > CACHE_SIZE:
            self._cache.clear()
        new = sorted(set(texts) - self._cache.keys())
        if new:
            with torch.no_grad():
                self._cache.update(zip(new, self._encode(new), strict=True))
        return torch.stack([self._cache[text] for text in texts]).to(self.head.weight.device)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Texts → (B, embed_dim), not normalised."""
        return self.head(self._encode_frozen(texts) if self.frozen else self._encode(texts))
