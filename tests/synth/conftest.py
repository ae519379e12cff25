"""One small SynthActions dataset, written once per test session by `action100m synth` and only read
by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from action100m.cli import main

# The same run as the library call generate_dataset(out, **RUN).
RUN = {"videos": 4, "seed": 0, "benchmark_clips": 8, "validation_clips": 4, "size": 128, "fps": 10.0}
COMMAND = [
    "synth",
    "--videos",
    "4",
    "--seed",
    "0",
    "--benchmark-clips",
    "8",
    "--validation-clips",
    "4",
    "--size",
    "128",
    "--fps",
    "10",
]


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    assert main([*COMMAND, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def truths(synth_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (synth_dir / "ground_truth.jsonl").read_text().splitlines()]
