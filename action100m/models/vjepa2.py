"""V-JEPA 2 encoders by name: any HF id or local checkpoint, or "tiny" (random init from a config)."""

from __future__ import annotations

import torch
from transformers import VJEPA2Model

from action100m.errors import ConfigError
from action100m.tiny.models import tiny_vjepa2

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}") from None


def load_vjepa2(
    name: str, device: str = "cpu", dtype: str = "float32", crop_size: int | None = None
) -> VJEPA2Model:
    """The encoder in eval mode on `device`. Fails at once, naming the model, if it cannot be loaded.

    `crop_size` (None: the model's own) sets the grid its rotary positions are computed on: V-JEPA 2
    reads a token's row and column from its index with the config's crop size, so clips of another
    size would get scrambled positions (the weights do not depend on it)."""
    overrides = {} if crop_size is None else {"crop_size": crop_size}
    if name == "tiny":
        model = tiny_vjepa2(**overrides)
    else:
        try:
            model = VJEPA2Model.from_pretrained(name, dtype=torch_dtype(dtype), **overrides)
        except (OSError, ValueError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot load V-JEPA 2 model {name!r}: {first_line}") from err
    if model.config.crop_size % model.config.patch_size:
        raise ConfigError(
            f"V-JEPA 2 model {name!r}: crop size {model.config.crop_size} is not a multiple of its "
            f"patch size {model.config.patch_size}"
        )
    return model.to(device=device, dtype=torch_dtype(dtype)).eval()
