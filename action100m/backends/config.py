"""Typed configs of the model backends; YAML presets live in configs/backend/.

One `BackendConfig` names one model serving one interface. The settings of the backend kind not in
use are ignored, so a preset can switch `kind` with a single override.

Settings that say where or how fast a model is served (server address, concurrency, timeouts,
retries, devices, batch sizes) are marked with `serving(...)`; `output_settings` leaves them out, and
every cache key of the build (its stage hashes, the refine node cache) is made from what it leaves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from action100m.backends.base import GenerationConfig

_SERVING = "serving"


def serving(default: Any) -> Any:
    """A config field that changes where or how fast an output is made, never the output itself."""
    return field(default=default, metadata={_SERVING: True})


def output_settings(config: Any) -> Any:
    """`config` as plain data without its serving settings: what decides its output.

    A dataclass loses its fields marked `serving`; a dict (a backend's `describe()`) loses the keys
    that are serving settings of the backend configs; enums become their values."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            f.name: output_settings(getattr(config, f.name))
            for f in dataclasses.fields(config)
            if not f.metadata.get(_SERVING)
        }
    if isinstance(config, dict):
        return {key: output_settings(value) for key, value in config.items() if key not in SERVING_KEYS}
    if isinstance(config, list | tuple):
        return [output_settings(value) for value in config]
    return config.value if isinstance(config, Enum) else config


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
    device: str = serving("auto")  # "auto": cuda when available, else cpu
    dtype: str = "auto"  # "auto": bfloat16 on cuda, float32 on cpu; or float16 / bfloat16 / float32
    batch_size: int = serving(8)
    trust_remote_code: bool = False  # runs code from the model repository; only for ids you trust
    revision: str | None = None  # a hub branch, tag or commit to pin
    local_files_only: bool = serving(False)  # never contact the hub (HF_HUB_OFFLINE=1 does the same)
    device_map: str | None = serving(None)  # e.g. "auto" to shard a large model over GPUs (needs accelerate)
    video_input: VideoInput = VideoInput.auto


@dataclass
class HTTPConfig:
    # The replicas serving the model: base_urls when given, else base_url alone. Each request goes to
    # the live replica with the fewest requests in flight.
    base_url: str = serving("http://localhost:8000/v1")
    base_urls: list[str] = field(default_factory=list, metadata={_SERVING: True})
    api_key_env: str = serving("VLLM_API_KEY")  # the NAME of the variable with the key; unset: none sent
    transport: Transport = serving(Transport.aiohttp)
    # Requests in flight to EACH replica. Size it so that the server never queues what it is sent: all
    # of a replica's clients together (the build tasks x concurrency) within its --max-num-seqs
    # (slurm/serve_vllm.sh's *_MAX_NUM_SEQS). A request the server queues would spend its timeout_s
    # waiting; sized so, timeout_s measures only a request that runs.
    concurrency: int = serving(64)
    timeout_s: float = serving(600.0)  # per request, sending to last byte
    # Connecting only: a replica whose node is gone (no answer, not even a refusal) is passed over
    # after this, not after timeout_s.
    connect_timeout_s: float = serving(10.0)
    max_retries: int = serving(4)  # on 408, 429, 5xx, timeouts, connection errors and unreadable bodies
    # retry k waits base * 2^k, capped, times a random factor in [0.5, 1]
    backoff_base_s: float = serving(1.0)
    backoff_max_s: float = serving(30.0)
    check_model: bool = serving(True)  # at start-up, fail if a reachable replica does not serve `model`
    # KEY=URL lines naming the replicas (slurm/serve_vllm.sh writes servers.env, one `servers_key` line
    # per replica): they win over base_url(s), and the file is read again whenever a replica's circuit
    # breaker opens and before each probe (the server job came back elsewhere, with other replicas).
    servers_file: str | None = serving(None)
    servers_key: str | None = serving(None)  # e.g. LLM_URL
    # The circuit breaker, one per replica: after this many connection failures or 5xx in a row the
    # replica takes no request while it is probed (first after backoff_base_s, doubling up to
    # breaker_backoff_max_s); its requests go to the other replicas, and it rejoins once it answers.
    # With every replica down, requests wait; they go on when one is back within breaker_wait_s, else
    # they fail as retryable. 0: off.
    breaker_failures: int = serving(8)
    breaker_wait_s: float = serving(1800.0)
    breaker_backoff_max_s: float = serving(60.0)
    image_format: ImageFormat = ImageFormat.jpeg
    jpeg_quality: int = 90
    video_input: VideoInput = VideoInput.images
    # More fields of every request body, as they are: e.g. {reasoning_effort: low} for GPT-OSS on vLLM
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass
class BackendConfig:
    interface: Interface = MISSING
    kind: BackendKind = BackendKind.transformers
    model: str = MISSING  # an HF hub id or local directory; for `openai`, the served model name
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)


# The serving settings by name, for the dicts a backend's describe() returns.
SERVING_KEYS = frozenset(
    f.name
    for cls in (HTTPConfig, TransformersConfig)
    for f in dataclasses.fields(cls)
    if f.metadata.get(_SERVING)
)
