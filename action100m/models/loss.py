"""Bidirectional InfoNCE in the shared space, correct under DDP.

Each rank scores its own predictions against the targets of every rank (and its targets against every
prediction). Gathered embeddings keep their gradient: the backward pass sums, over all ranks, the
gradient each one computed for every gathered row and hands each rank the slice of its own rows (as
open_clip's `gather_with_grad`). With DDP averaging the parameter gradients over ranks, the update is
exactly that of the loss on the global batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from action100m.models.config import LossConfig


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), local.shape[0]
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # all-reduce rather than reduce-scatter: gloo (CPU) has no reduce-scatter
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(local: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows in rank order (every rank must pass the same number), and this rank's offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local, 0
    return _GatherWithGrad.apply(local), dist.get_rank() * local.shape[0]


class InfoNCE(nn.Module):
    def __init__(self, cfg: LossConfig):
        super().__init__()
        initial = torch.tensor(math.log(1.0 / cfg.temperature))
        if cfg.learn_temperature:
            self.log_scale = nn.Parameter(initial)
        else:
            self.register_buffer("log_scale", initial)
        self.max_log_scale = math.log(cfg.max_logit_scale)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach().clamp(max=self.max_log_scale)))

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the video→text and text→video cross-entropies over this rank's rows; also returns the
        video→text logits of this rank's rows against all targets (row i's match is column offset + i)."""
        predicted, target = F.normalize(predicted, dim=-1), F.normalize(target, dim=-1)
        all_predicted, offset = gather_with_grad(predicted)
        all_target, _ = gather_with_grad(target)
        scale = self.log_scale.clamp(max=self.max_log_scale).exp()
        to_text = scale * predicted @ all_target.T
        to_video = scale * target @ all_predicted.T
        labels = torch.arange(predicted.shape[0], device=predicted.device) + offset
        loss = (F.cross_entropy(to_text, labels) + F.cross_entropy(to_video, labels)) / 2
        return loss, to_text
