"""Model backends shared by captioning and refinement: local transformers or an OpenAI-compatible server.

from action100m.backends import BackendConfig, build_backend
captioner = build_backend(cfg.frame_captioner)      # an ImageCaptioner, per cfg.interface
texts = captioner.caption_images(frames, "describe this image in detail")  # str | BackendError each
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from action100m.backends.base import (
    LLM,
    Backend,
    BackendError,
    GenerationConfig,
    ImageCaptioner,
    Message,
    VideoCaptioner,
)
from action100m.backends.config import (
    BackendConfig,
    BackendKind,
    HTTPConfig,
    ImageFormat,
    Interface,
    TransformersConfig,
    Transport,
    VideoInput,
)
from action100m.errors import ConfigError

# Random-init models of the paper's classes, built in-process (no download): `build=tiny` and tests.
TINY_MODELS = {
    "tiny-llama": "tiny_llm",
    "tiny-llama-bpe": "tiny_bpe_llm",  # a byte-level BPE tokenizer: it can spell JSON
    "tiny-gpt-oss": "tiny_gpt_oss",
    "tiny-mllama": "tiny_mllama",
    "tiny-perception-lm": "tiny_perception_lm",
}


def build_backend(cfg: BackendConfig | DictConfig | dict[str, Any]) -> ImageCaptioner | VideoCaptioner | LLM:
    """The backend `cfg` names, serving `cfg.interface`; a bad model id or server fails here, naming it."""
    if not isinstance(cfg, BackendConfig):
        try:
            cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BackendConfig), cfg))  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            raise ConfigError(f"backend config: {' '.join(str(err).split())}") from err
    interface = Interface(cfg.interface)
    # Imported on demand: an HTTP-only run should not pay for importing transformers, and vice versa.
    if BackendKind(cfg.kind) == BackendKind.openai:
        from action100m.backends.http_backend import HTTPChatBackend

        return HTTPChatBackend(cfg.model, cfg.http, cfg.generation)
    from action100m.backends import transformers_backend as tb

    backend_class = {
        Interface.image_captioner: tb.TransformersImageCaptioner,
        Interface.video_captioner: tb.TransformersVideoCaptioner,
        Interface.llm: tb.TransformersLLM,
    }[interface]
    if cfg.model in TINY_MODELS:
        from action100m.tiny import backends as tiny_backends

        model, processor = getattr(tiny_backends, TINY_MODELS[cfg.model])()
        return backend_class(model, processor, cfg.model, cfg.generation, cfg.transformers)
    return backend_class.from_pretrained(cfg.model, cfg.transformers, cfg.generation)


__all__ = [
    "LLM",
    "Backend",
    "BackendConfig",
    "BackendError",
    "BackendKind",
    "GenerationConfig",
    "HTTPConfig",
    "ImageCaptioner",
    "ImageFormat",
    "Interface",
    "Message",
    "Transport",
    "TransformersConfig",
    "VideoCaptioner",
    "VideoInput",
    "TINY_MODELS",
    "build_backend",
]
