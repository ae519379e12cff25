"""What our checkpoints carry besides Lightning's own state, and the checks made before using one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from action100m.errors import ConfigError

if TYPE_CHECKING:
    from action100m.models.vljepa import VLJEPA

CHECKPOINT_KEY = "action100m"  # our entry in a Lightning checkpoint: plain data only
CHECKPOINT_VERSION = 1


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint loaded with `weights_only=True` (tensors and plain data only: no code runs)."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError) as err:  # pickle errors surface as UnpicklingError(RuntimeError)
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
            raise ConfigError(f"{where}: model preset {ours!r}: parameters {what} in the checkpoint: {_names(keys)} "
                              f"(was it trained with other model settings?)")  # fmt: skip
    return meta


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VLJEPA:
    """The VL-JEPA model of a training checkpoint, in eval mode on `map_location`, rebuilt from the
    model config stored in it."""
    # Imported here: vljepa.py uses this module's checks, so a module-level import would be circular.
    from action100m.models.vljepa import VLJEPA

    checkpoint = read_checkpoint(path, map_location)
    meta = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict) or "model" not in meta:
        raise ConfigError(
            f"checkpoint {path}: not an action100m VL-JEPA checkpoint (no '{CHECKPOINT_KEY}' entry)"
        )
    model = VLJEPA(meta["model"])
    check_compatible(checkpoint, model, f"checkpoint {path}")
    model.load_state_dict(checkpoint["state_dict"])
    model.samples_seen, model.skipped_samples = meta["samples_seen"], meta["skipped_samples"]
    model.training_data = dict(meta.get("train", {}))  # empty in checkpoints saved before it was recorded
    model.identity = dict(meta.get("identity", {}))  # likewise
    return model.to(map_location).eval()
