"""AdamW over parameter groups (learning-rate multipliers, no decay on biases, norms and the
temperature) and the learning-rate schedule: constant by default, optional warmup and cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from action100m.errors import ConfigError

SCHEDULES = ("constant", "cosine")


@dataclass
class OptimConfig:
    lr: float = 5e-5  # the paper's constant rate
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "constant"  # constant | cosine (to min_lr_ratio·lr at max_steps)
    warmup_steps: int = 0  # linear warmup from 0, with either schedule
    min_lr_ratio: float = 0.0


def param_groups(
    parts: Iterable[tuple[str, nn.Module | nn.Parameter, float]], cfg: OptimConfig
) -> list[dict]:
    """One group per (name, module or parameter, lr multiplier) and decay kind, trainable params only.

    Matrices decay; biases, norm weights and scalars (the temperature) do not."""
    groups = []
    for name, part, mult in parts:
        params = list(part.parameters()) if isinstance(part, nn.Module) else [part]
        trainable = [p for p in params if p.requires_grad]
        for decay in (True, False):
            chosen = [p for p in trainable if (p.ndim >= 2) == decay]
            if chosen:
                groups.append(
                    {
                        "name": f"{name}{'' if decay else '/no_decay'}",
                        "params": chosen,
                        "lr": cfg.lr * mult,
                        "weight_decay": cfg.weight_decay if decay else 0.0,
                    }
                )
    return groups


def lr_lambda(cfg: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """The factor on every group's own learning rate at a step."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(
            f"optim.schedule: unknown schedule {cfg.schedule!r} (one of {', '.join(SCHEDULES)})"
        )
    if cfg.schedule == "cosine" and max_steps <= 0:
        raise ConfigError(
            "optim.schedule=cosine needs a step budget (trainer.max_steps or data.samples_seen)"
        )

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(groups: list[dict], cfg: OptimConfig, max_steps: int) -> dict:
    """What `configure_optimizers` returns: AdamW and its per-step schedule."""
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, max_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
