"""What our checkpoints carry besides Lightning's own state, and the checks made before using one."""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch
from torch import nn

from action100m.errors import ConfigError

CHECKPOINT_KEY = "action100m"  # our entry in a Lightning checkpoint: plain data only
CHECKPOINT_VERSION = 1


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint loaded with `weights_only=True` (tensors and plain data only: no code runs)."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    # weights_only refusing a pickle's code raises pickle.UnpicklingError; a bad zip, RuntimeError
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise ConfigError(f"checkpoint {path}: unreadable: {str(err).splitlines()[0]}") from err


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def check_compatible(checkpoint: dict[str, Any], model: nn.Module, where: str) -> dict[str, Any]:
    """Our metadata from `checkpoint`, or a `ConfigError` if the checkpoint cannot be loaded into
    `model` (another model preset, other parameter names or shapes), naming the cause."""
    meta = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict) or "model" not in meta:
        raise ConfigError(f"{where}: not an action100m VL-JEPA checkpoint (no '{CHECKPOINT_KEY}' entry)")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{where}: checkpoint format {meta.get('version')}, expected {CHECKPOINT_VERSION}")
    theirs, ours = meta["model"].get("preset"), model.cfg.preset
    if theirs != ours:
        raise ConfigError(f"{where}: trained with model preset {theirs!r}, but this model is preset {ours!r}")
    saved = checkpoint.get("state_dict", {})
    expected = model.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    reshaped = [k for k in expected if k in saved and saved[k].shape != expected[k].shape]
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("with other shapes", reshaped)):
        if keys:
            raise ConfigError(
                f"{where}: model preset {ours!r}: parameters {what} in the checkpoint: {_names(keys)} "
                f"(was it trained with other model settings?)"
            )
    return meta
