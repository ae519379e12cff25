"""One small SynthActions dataset, generated once per test session and only read by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from action100m.synth.generate import generate_dataset

RUN = {"videos": 4, "seed": 0, "benchmark_clips": 8, "size": 128, "fps": 10.0}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(out, **RUN)
    return out


@pytest.fixture(scope="session")
def truths(synth_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (synth_dir / "ground_truth.jsonl").read_text().splitlines()]
