"""The pinned vLLM asked about every route a build preset sends it (engines/vllm_support.py, in the vLLM
venv, on tiny random-init model directories of each architecture): every one must pass, so a preset
with a route no engine accepts fails here. The two captioner routes the paper preset used to send to
vLLM stay refused on vLLM 0.32, for the reasons vLLM itself gives."""

from __future__ import annotations

import pytest

from action100m.backends.support import Route, check_vllm_routes, pinned_versions, routes
from tests.engines.conftest import VENV_TIMEOUT_S

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(VENV_TIMEOUT_S + 300)]

VERSION = pinned_versions()["vllm"]
MLLAMA_IMAGE = Route(
    "was paper", "frame captioner", "caption.frame_captioner", "vllm", VERSION,
    "meta-llama/Llama-3.2-11B-Vision-Instruct", "MllamaForConditionalGeneration", "image",
)  # fmt: skip
PLM_VIDEO = Route(
    "was paper", "segment captioner", "caption.segment_captioner", "vllm", VERSION,
    "facebook/Perception-LM-3B", "PerceptionLMForConditionalGeneration", "video", 32,
)  # fmt: skip


@pytest.fixture(scope="module")
def answers(vllm_venv):
    """Every preset's vLLM routes and the two refused ones, asked in one vLLM process (~15 s)."""
    served = [route for route in routes() if route.engine == "vllm"]
    return {route.name: route for route in check_vllm_routes([*served, MLLAMA_IMAGE, PLM_VIDEO], vllm_venv)}


def test_every_route_a_preset_sends_to_vllm_is_accepted(answers):
    sent = {name: route for name, route in answers.items() if not name.startswith("was paper")}
    assert set(sent) == {"paper/llm", "cluster_smoke/llm"}
    for name, route in sent.items():
        assert route.accepted, (name, route.reason)
    assert answers["paper/llm"].reason == "served as GptOssForCausalLM"


def test_mllama_images_are_refused_by_vllm_0_32(answers):
    route = answers["was paper/frame captioner"]
    # the registry dropped Mllama (0.10.2); its Transformers fallback resolves, then cannot size an image
    assert route.accepted is False
    assert route.reason == (
        "startup: AttributeError: 'MllamaProcessor' object has no attribute '_get_num_multimodal_tokens'"
    )


def test_perception_lm_video_is_refused_by_vllm_0_32(answers):
    route = answers["was paper/segment captioner"]
    assert route.accepted is False
    # this venv has no torchvision (engines/vllm_venv.sh), which PLM's processors need; with it, vLLM's
    # Transformers backend would still serve no video: PerceptionLMProcessor counts no video tokens
    assert route.reason.startswith(
        "registry: ImportError: PerceptionLMVideoProcessor requires the Torchvision"
    )
    assert route.reason.endswith(
        "video: PerceptionLMProcessor._get_num_multimodal_tokens counts no video tokens (transformers "
        "5.19.0): vLLM's Transformers backend serves the model without video"
    )
