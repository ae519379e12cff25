"""slurm/build.sh asks data_build/build.py which backends take a server's address: only kind=openai ones."""

from __future__ import annotations

import pytest

from data_build.build import configured_backends

KEYS = ["caption.frame_captioner", "caption.segment_captioner", "refine.llm"]


@pytest.mark.parametrize(
    "preset, served",
    [
        ("paper", ["refine.llm"]),  # the captioners run in the build task (local transformers)
        ("cluster_smoke", ["refine.llm"]),
        ("tiny", []),  # every model in-process
        ("demo", []),  # no models at all
    ],
)
def test_only_server_backed_backends_take_an_address(preset, served):
    assert configured_backends(KEYS, [f"build={preset}", "input=m.jsonl", "output=out"]) == served


def test_a_captioner_switched_to_a_server_takes_one():
    overrides = ["build=paper", "input=m.jsonl", "output=out", "caption.frame_captioner.kind=openai"]
    assert configured_backends(KEYS, overrides) == ["caption.frame_captioner", "refine.llm"]
