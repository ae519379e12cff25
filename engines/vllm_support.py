"""Does the pinned vLLM accept a route (a model architecture and a request kind)? Ask vLLM itself.

Run with the vLLM venv's interpreter, which cannot import the project (it has its own transformers):

    .venv-vllm/bin/python engines/vllm_support.py ROUTES.json     # prints one JSON list

ROUTES.json is a list of routes: {"name", "model_dir" (a tiny random-init model directory of the
architecture, see `action100m tiny-model`), "request" (image | video | images | json_schema),
"frames" (video and images: how many), "json_schema" (json_schema: the schema sent as
response_format)}. Each answer: {"name", "accepted", "stage", "architecture", "reason", "log"}, and
where they apply "modalities" (what the processor supports), "tokens" (the media's placeholder
tokens), "structured_outputs_backend", "video" (see _video_tokens).

Every check is a step `vllm serve` and its request path take, called in one process (no server):
  registry   EngineArgs(...).create_model_config(), as `vllm serve` builds its model config: the model
             registry resolves the architecture, natively or through the Transformers backend, or
             refuses it (e.g. an architecture vLLM dropped);
  processor  MULTIMODAL_REGISTRY.create_processor: the model's multimodal processor (for the
             Transformers backend: the Hugging Face processor) and the modalities it supports;
  startup    the per-item token budget and dummy inputs the engine profiles with before it serves;
  request    the request's media parsed against the supported modalities (vLLM's "At most 0
             video(s) may be provided in one prompt") and processed as the renderer processes it; a
             json_schema request's structured output validated as the server validates it.
The first step that raises refuses the route, with vLLM's message; "log" keeps what vLLM logged on
the way (e.g. why its Transformers backend disabled video), which often says the cause.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

MODALITY = {"image": "image", "images": "image", "video": "video"}
REASON_CHARS = 160
STRUCTURED_OUTPUTS_BACKEND = "auto"  # slurm/serve_vllm.sh's GPU servers keep vLLM's default


class _Lines(logging.Handler):
    """Keeps the messages vLLM logs while one route is checked."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > REASON_CHARS:  # e.g. an ImportError's install instructions
        text = text[: text.rfind(" ", 0, REASON_CHARS)] + " ..."
    return f"{type(err).__name__}: {text}"


def _media(kind: str, frames: int) -> dict[str, list[Any]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    if kind == "image":
        return {"image": [Image.fromarray(frame)]}
    if kind == "images":
        return {"image": [Image.fromarray(frame) for _ in range(frames)]}
    return {"video": [np.stack([frame] * frames)]}


def _multimodal(model_config: Any, kind: str, frames: int, answer: dict[str, Any]) -> None:
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs

    if not model_config.is_multimodal_model:
        answer.update(stage="processor", reason=f"{answer['architecture']} is not a multimodal model")
        return
    answer["stage"] = "processor"
    processor = MULTIMODAL_REGISTRY.create_processor(model_config)
    supported = dict(processor.info.supported_mm_limits)
    answer["modalities"] = sorted(supported)
    modality = MODALITY[kind]
    counts = {modality: frames if kind == "images" else 1}
    answer["stage"] = "request"
    media = _media(kind, frames)
    if modality == "video" and processor.info.get_data_parser().video_needs_metadata:
        media = {"video": [(media["video"][0], {"fps": 1.0, "total_num_frames": frames})]}
    items = processor.info.parse_mm_data(media)  # refuses a modality the model does not support
    answer["stage"] = "startup"
    processor.info.get_mm_max_tokens_per_item(model_config.max_model_len, counts)
    answer["stage"] = "request"
    tokenizer = processor.info.get_tokenizer()
    prompt = tokenizer.encode(processor.dummy_inputs.get_dummy_text(counts))
    processed = processor.apply(ProcessorInputs(prompt, items), TimingContext(enabled=False))
    placeholders = processed["mm_placeholders"][modality]
    answer["tokens"] = sum(p.length for p in placeholders)


def _json_schema(model_config: Any, schema: dict[str, Any], answer: dict[str, Any]) -> None:
    from vllm.config import StructuredOutputsConfig
    from vllm.sampling_params import SamplingParams, StructuredOutputsParams
    from vllm.tokenizers import cached_tokenizer_from_config

    answer["stage"] = "request"
    params = SamplingParams(max_tokens=16, structured_outputs=StructuredOutputsParams(json=schema))
    params._validate_structured_outputs(
        model_config,
        StructuredOutputsConfig(backend=STRUCTURED_OUTPUTS_BACKEND),
        cached_tokenizer_from_config(model_config),
    )
    answer["structured_outputs_backend"] = params.structured_outputs._backend


def _video_tokens(model_dir: str) -> str:
    """Whether vLLM's Transformers backend would enable video for this model's processor, for when the
    processor cannot be built here (its torchvision processors, in a venv without torchvision).

    vLLM decides in MultiModalProcessingInfo._is_video_model: it calls the processor's
    `_get_num_multimodal_tokens(video_sizes=...)` and serves video only if that counts video tokens
    (an AttributeError also means "cannot count"). The same call is made here on an instance of the
    processor class without its sub-processors: a count of None is vLLM's "no video" answer; an
    AttributeError here may be the missing sub-processors, so it decides nothing."""
    import transformers
    from vllm.model_executor.models.transformers.multimodal import _MIN_DUMMY_SIDE

    with open(f"{model_dir}/processor_config.json", encoding="utf-8") as file:
        name = json.load(file)["processor_class"]
    processor_class = getattr(transformers, name)
    bare = processor_class.__new__(processor_class)
    try:
        counted = bare._get_num_multimodal_tokens(video_sizes=([1, _MIN_DUMMY_SIDE, _MIN_DUMMY_SIDE],))
    except AttributeError as err:
        return f"undetermined: {_first_line(err)}"
    if counted["num_video_tokens"] is None:
        return (
            f"{name}._get_num_multimodal_tokens counts no video tokens (transformers "
            f"{transformers.__version__}): vLLM's Transformers backend serves the model without video"
        )
    return f"{name} counts video tokens: vLLM's Transformers backend would enable video"


def check(route: dict[str, Any]) -> dict[str, Any]:
    """One route's answer: accepted, or the stage that refused it and vLLM's reason."""
    from vllm.engine.arg_utils import EngineArgs

    answer: dict[str, Any] = {"name": route["name"], "accepted": False, "stage": "registry"}
    answer.update(architecture=None, reason="", log=[])
    lines = _Lines()
    logging.getLogger("vllm").addHandler(lines)
    try:
        model_config = EngineArgs(model=route["model_dir"]).create_model_config()
        answer["architecture"] = model_config._model_info.architecture  # the class vLLM would run
        if route["request"] == "json_schema":
            _json_schema(model_config, route["json_schema"], answer)
        else:
            _multimodal(model_config, route["request"], int(route.get("frames", 1)), answer)
        answer["accepted"] = not answer["reason"]
    except Exception as err:  # noqa: BLE001 -- whatever vLLM raises is the refusal we report
        answer["reason"] = _first_line(err)
        if route["request"] == "video" and "Torchvision" in str(err):
            answer["video"] = _video_tokens(route["model_dir"])
    finally:
        logging.getLogger("vllm").removeHandler(lines)
    answer["log"] = [line for line in lines.lines if "Transformers" in line or "video" in line]
    return answer


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: vllm_support.py ROUTES.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as file:
        routes = json.load(file)
    answers = [check(route) for route in routes]
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
