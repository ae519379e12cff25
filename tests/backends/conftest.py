"""Fixtures of the backend tests: tiny random-init models of the paper's classes, clips, the fake server."""

from __future__ import annotations

import pytest
import torch

from action100m.tiny.backends import tiny_gpt_oss, tiny_llm, tiny_mllama, tiny_perception_lm


@pytest.fixture(scope="session")
def llama():
    return tiny_llm()


@pytest.fixture(scope="session")
def gpt_oss():
    return tiny_gpt_oss()


@pytest.fixture(scope="session")
def mllama():
    return tiny_mllama()


@pytest.fixture(scope="session")
def perception_lm():
    return tiny_perception_lm()


@pytest.fixture
def images() -> list[torch.Tensor]:
    """Random RGB images of different sizes, as the decoder returns them (uint8 HWC)."""
    generator = torch.Generator().manual_seed(0)
    sizes = [(24, 32), (40, 30), (32, 32), (18, 50)]
    return [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=generator) for h, w in sizes]


@pytest.fixture
def clips() -> list[torch.Tensor]:
    """Random clips (uint8 THWC) with different frame counts and sizes."""
    generator = torch.Generator().manual_seed(1)
    shapes = [(4, 24, 32), (3, 32, 32), (4, 40, 36)]
    return [torch.randint(0, 256, (*shape, 3), dtype=torch.uint8, generator=generator) for shape in shapes]
