"""A viewer site of the demo shard set, made once per session, and a release file with hostile text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from action100m.cli import main
from tests.train.data.shardset import demo_shards

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    return demo_shards(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_site(demo, tmp_path_factory) -> Path:
    """SITE of `action100m view` over the demo shards (shared: do not modify)."""
    site = tmp_path_factory.mktemp("view") / "site"
    assert main(["view", str(demo), "--out", str(site)]) == 0
    return site


def hostile_row(uid: str = "hostile") -> dict:
    """A release row whose every text tries to break out of the page."""
    gpt = {
        "summary": {"brief": HOSTILE, "detailed": HOSTILE},
        "action": {"brief": "stir <b>soup</b>", "detailed": HOSTILE, "actor": HOSTILE},
    }
    nodes = [
        {"node_id": "root", "parent_id": None, "level": 0, "start": 0.0, "end": 4.0},
        {"node_id": "a", "parent_id": "root", "level": 1, "start": 0.0, "end": 2.0},
        {"node_id": "b", "parent_id": "root", "level": 1, "start": 2.0, "end": 4.0},
    ]
    for node in nodes:
        node.update(plm_action=HOSTILE, plm_caption=HOSTILE, llama3_caption=HOSTILE, gpt=gpt)
    return {"video_uid": uid, "metadata": {"title": HOSTILE, "duration": 4}, "nodes": nodes}


@pytest.fixture
def hostile_release(tmp_path) -> Path:
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(hostile_row()) + "\n")
    return path
