"""The serving support matrix (action100m/backends/support.py): the presets' routes, and every route
that goes to the transformers engine answered by the pinned transformers on the tiny model of its class.
The vLLM routes are asked of vLLM in tests/engines/test_vllm_support.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from action100m.backends.support import (
    FRAMES_PER_SEGMENT,
    Route,
    check_transformers_route,
    format_matrix,
    pinned_versions,
    routes,
)
from action100m.cli import main
from action100m.errors import ConfigError
from data_build.caption import CaptionConfig

ROOT = Path(__file__).resolve().parents[2]


def table(found: list[Route]) -> dict[str, tuple]:
    return {r.name: (r.engine, r.model, r.architecture, r.request, r.frames) for r in found}


def test_the_paper_preset_captions_on_the_build_task_and_refines_on_vllm():
    assert table(routes(["paper"])) == {
        "paper/frame captioner": (
            "transformers",
            "meta-llama/Llama-3.2-11B-Vision-Instruct",
            "MllamaForConditionalGeneration",
            "image",
            1,
        ),
        "paper/segment captioner": (
            "transformers",
            "facebook/Perception-LM-3B",
            "PerceptionLMForConditionalGeneration",
            "video",
            32,
        ),
        "paper/action labeller": (
            "transformers",
            "facebook/Perception-LM-3B",
            "PerceptionLMForConditionalGeneration",
            "video",
            32,
        ),
        "paper/llm": ("vllm", "openai/gpt-oss-120b", "GptOssForCausalLM", "json_schema", 1),
    }


def test_every_preset_has_its_routes_and_the_demo_none():
    found = table(routes())
    assert {name for name in found if name.startswith("cluster_smoke/")} == {"cluster_smoke/llm"}
    assert found["cluster_smoke/llm"][0] == "vllm" and found["tiny/llm"][0] == "transformers"
    assert not [name for name in found if name.startswith("demo/")]
    # an override changes the route: the frames as images
    [segment] = [
        r
        for r in routes(["paper"], ["caption.segment_captioner.transformers.video_input=images"])
        if r.role == "segment captioner"
    ]
    assert (segment.request, segment.frames) == ("images", 32)


def test_versions_are_the_pinned_ones():
    pins = pinned_versions()
    locked = (ROOT / "requirements" / "lock.txt").read_text()
    assert f"\ntransformers=={pins['transformers']}\n" in locked
    assert f"\nvllm-cpu=={pins['vllm']}\n" in (ROOT / "requirements" / "vllm-lock.txt").read_text()
    serve = (ROOT / "slurm" / "serve_vllm.sh").read_text()
    assert re.search(r"^VLLM_VERSION=\$\{VLLM_VERSION-(\S+)\}$", serve, re.M).group(1) == pins["vllm"]
    assert FRAMES_PER_SEGMENT == CaptionConfig().frames_per_segment


def test_a_model_of_unknown_architecture_is_a_one_line_error_naming_it():
    with pytest.raises(ConfigError, match="refine.llm.model=my/model: no architecture known"):
        routes(["paper"], ["refine.llm.model=my/model"])


@pytest.mark.timeout(300)
def test_every_transformers_route_of_every_preset_passes():
    local = [r for r in routes() if r.engine == "transformers"]
    assert {r.preset for r in local} == {"paper", "tiny"}
    # one check per distinct (class, request): the action labeller sends what the segment captioner sends
    distinct = {(r.architecture, r.request, r.frames): r for r in local}
    for route in distinct.values():
        checked = check_transformers_route(route)
        assert checked.accepted, (route.name, checked.reason)


def test_a_request_the_model_cannot_take_is_refused():
    # a text-only LLM handed an image: the transformers engine refuses, naming the model
    route = Route("x", "frame captioner", "k", "transformers", "", "m", "LlamaForCausalLM", "image")
    checked = check_transformers_route(route)
    assert checked.accepted is False and "tiny-llama-bpe" in checked.reason, checked
    # Mllama's processor takes no video: it would caption the prompt alone
    route = Route(
        "x", "segment captioner", "k", "transformers", "", "m", "MllamaForConditionalGeneration", "video", 8
    )
    checked = check_transformers_route(route)
    assert (checked.accepted, checked.reason) == (
        False,
        "video_input=video: MllamaProcessor has no video processor; set video_input to images or auto",
    )


def test_cli_prints_the_matrix(capsys):
    assert main(["serving", "build=paper"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == [
        "preset",
        "role",
        "engine",
        "model",
        "architecture",
        "request",
        "status",
    ]
    assert "video x32" in printed and printed.count("not checked") == 4
    assert format_matrix([]).count("\n") == 1
