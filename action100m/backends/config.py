"""Typed configs of the model backends; YAML presets live in configs/backend/.

One `BackendConfig` names one model serving one interface. The settings of the backend kind not in
use are ignored, so a preset can switch `kind` with a single override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from action100m.backends.base import GenerationConfig


class Interface(str, Enum):
    image_captioner = "image_captioner"
    video_captioner = "video_captioner"
    llm = "llm"


class BackendKind(str, Enum):
    transformers = "transformers"
    openai = "openai"  # any OpenAI-compatible Chat Completions server, e.g. `vllm serve`


class Transport(str, Enum):
    aiohttp = "aiohttp"  # plain aiohttp: the only client measured to keep up with 128 requests in flight
    openai = "openai"  # the openai SDK on its aiohttp transport (benchmarks/http_backend.py)


class VideoInput(str, Enum):
    auto = "auto"  # transformers: a video when the processor has a video processor, else images
    images = "images"  # the clip's frames as separate images
    video = "video"  # one video input (HTTP: a vLLM `video/jpeg` data URL of the frames)


class ImageFormat(str, Enum):
    jpeg = "jpeg"
    png = "png"


@dataclass
class TransformersConfig:
    device: str = "auto"  # "auto": cuda when available, else cpu
    dtype: str = "auto"  # "auto": bfloat16 on cuda, float32 on cpu; or float16 / bfloat16 / float32
    batch_size: int = 8
    trust_remote_code: bool = False  # runs code from the model repository; only for ids you trust
    revision: str | None = None  # a hub branch, tag or commit to pin
    local_files_only: bool = False  # never contact the hub (HF_HUB_OFFLINE=1 does the same)
    device_map: str | None = None  # e.g. "auto" to shard a large model over GPUs (needs accelerate)
    video_input: VideoInput = VideoInput.auto


@dataclass
class HTTPConfig:
    base_url: str = "http://localhost:8000/v1"
    api_key_env: str = "VLLM_API_KEY"  # the NAME of the variable holding the key; unset: no key sent
    transport: Transport = Transport.aiohttp
    concurrency: int = 64  # requests in flight per backend
    timeout_s: float = 600.0  # per request, sending to last byte
    max_retries: int = 4  # on 429, 5xx, timeouts, connection errors and unreadable bodies
    backoff_base_s: float = 1.0  # retry k waits base * 2^k, capped, times a random factor in [0.5, 1]
    backoff_max_s: float = 30.0
    check_model: bool = True  # at start-up, fail if a reachable server does not serve `model`
    image_format: ImageFormat = ImageFormat.jpeg
    jpeg_quality: int = 90
    video_input: VideoInput = VideoInput.images


@dataclass
class BackendConfig:
    interface: Interface = MISSING
    kind: BackendKind = BackendKind.transformers
    model: str = MISSING  # an HF hub id or local directory; for `openai`, the served model name
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
