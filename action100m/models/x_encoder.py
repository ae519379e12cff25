"""X-encoder: the V-JEPA 2 video encoder (its JEPA predictor is dropped), frozen by default."""

from __future__ import annotations

import torch
from torch import nn

from action100m.models.config import XEncoderConfig
from action100m.models.hub import MASTER_DTYPE
from action100m.models.vjepa2 import load_vjepa2


class XEncoder(nn.Module):
    def __init__(self, cfg: XEncoderConfig, crop_size: int | None = None):
        super().__init__()
        # The tiny encoder seeds its own init: keep that from touching the caller's RNG stream.
        with torch.random.fork_rng(devices=[]):
            vjepa2 = load_vjepa2(cfg.name, dtype=MASTER_DTYPE, crop_size=crop_size)
        self.encoder = vjepa2.encoder
        self.tubelet_size = vjepa2.config.tubelet_size
        self.width = vjepa2.config.hidden_size
        self.frozen = cfg.freeze
        if self.frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> XEncoder:
        # A frozen encoder stays in eval mode (no dropout, no drop-path) while the rest trains.
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) normalised frames → (B, tokens, width). An image (T = 1) is repeated to one
        tubelet, as V-JEPA 2 reads images."""
        if clips.ndim != 5:
            raise ValueError(f"expected clips of shape (B, T, 3, H, W), got {tuple(clips.shape)}")
        if clips.shape[1] == 1:
            clips = clips.expand(-1, self.tubelet_size, -1, -1, -1)
        if clips.shape[1] % self.tubelet_size:
            raise ValueError(
                f"{clips.shape[1]} frames is not a multiple of the tubelet size {self.tubelet_size}"
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.encoder(pixel_values_videos=clips).last_hidden_state
