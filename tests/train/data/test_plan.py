"""The data plan: computed once, cached beside the shards, O(shards) per rank unless resampling is on."""

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

import action100m.train.data.scan as scan
from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import read_tar
from action100m.errors import ConfigError
from action100m.train.data.config import DataConfig, ResampleConfig
from action100m.train.data.fields import keeps, node_texts
from action100m.train.data.module import plan_data
from action100m.train.data.resample import dedupe_key
from action100m.train.data.scale import select_scale

FIELDS = {"action_brief": 1.0, "action_label": 1.0}


def config(shards, cache, **overrides):
    return DataConfig(shards=str(shards), cache_dir=str(cache), text_fields=FIELDS, **overrides)


def strings_in(obj, seen=None) -> set[str]:
    """Every str reachable from `obj` (dataclasses, containers, plain objects)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(strings_in(k, seen) | strings_in(v, seen) for k, v in obj.items()))
    if isinstance(obj, list | tuple | set | frozenset):
        return set().union(*(strings_in(v, seen) for v in obj))
    if dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
        return set().union(*(strings_in(v, seen) for v in vars(obj).values()))
    return set()


def kept_briefs(paths, cfg):
    """The brief actions of the nodes the config trains on, read straight from the tars."""
    briefs = Counter()
    for path in paths:
        for _, files in read_tar(path):
            record = VideoRecord.from_json(files["json"])
            for node in record.nodes:
                if not keeps(node, cfg.min_duration, cfg.max_duration, cfg.annotated_only):
                    continue
                texts = node_texts(node, record.metadata, list(FIELDS))
                if texts and "action_brief" in texts:
                    briefs[dedupe_key(texts["action_brief"])] += 1
    return briefs


def test_without_resampling_the_plan_holds_no_brief_action(shards, tmp_path):
    cfg = config(shards, tmp_path)
    plan = plan_data(cfg)
    briefs = kept_briefs(plan.subset.shards, cfg)
    raw = {
        node.annotation.action_brief
        for path in plan.subset.shards
        for _, files in read_tar(path)
        for node in VideoRecord.from_json(files["json"]).nodes
        if node.annotation
    }
    assert briefs and not strings_in(plan) & (set(briefs) | raw)
    assert plan.scan.samples > 0 and plan.describe()["samples"] == plan.scan.samples


def test_with_resampling_the_plan_counts_deduplicated_briefs(shards, tmp_path):
    cfg = config(shards, tmp_path, min_duration=2.0, resample=ResampleConfig(enabled=True))
    plan = plan_data(cfg)
    assert plan.scan.brief_counts == dict(kept_briefs(plan.subset.shards, cfg))
    assert sum(plan.scan.brief_counts.values()) == plan.scan.per_field["action_brief"]


def test_a_second_plan_reads_the_cached_plan_without_rescanning(shards, tmp_path, monkeypatch):
    calls = Counter()
    real = scan.scan_shard
    monkeypatch.setattr(scan, "scan_shard", lambda path: calls.update([path.name]) or real(path))
    cfg = config(shards, tmp_path, scale=0.5)
    first = plan_data(cfg)
    assert sorted(calls) == sorted(p.name for p in first.subset.shards) and set(calls.values()) == {1}
    filtered = plan_data(config(shards, tmp_path, scale=0.5, min_duration=4.0))
    assert sum(calls.values()) == 4  # new filters: a new plan from the shards' scans, no tar read again
    assert filtered.scan.samples < first.scan.samples

    for path in (tmp_path / "scan").iterdir():  # neither plan may need a shard's scan again
        path.unlink()
    again = plan_data(cfg)
    assert sum(calls.values()) == 4 and not list((tmp_path / "scan").iterdir())
    assert again.describe() == first.describe()
    assert plan_data(config(shards, tmp_path, scale=0.5, min_duration=4.0)).describe() == filtered.describe()
    assert len(list((tmp_path / "plan").glob("plan-*.json"))) == 2


def test_the_plan_and_scans_are_the_same_bytes_each_time(shards, tmp_path):
    plans = []
    for cache in (tmp_path / "a", tmp_path / "b"):
        plan_data(config(shards, cache, scale=0.25))
        plans.append({p.relative_to(cache): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()})
    assert plans[0] == plans[1] and len(plans[0]) == 3  # 2 scans + the plan; no lock left behind


def test_a_rank_waits_for_the_rank_that_plans(tmp_path):
    target = tmp_path / "plan-x.json"
    lock = scan.lock_path(target)
    lock.touch()  # another rank is planning
    writer = threading.Timer(0.5, lambda: target.write_text('{"samples": 7}\n'))
    writer.start()
    got = scan.load_or_compute(target, lambda beat: pytest.fail("planned twice"), stale_after=30, poll=0.05)
    assert got == {"samples": 7}


def test_a_stale_lock_is_taken_over(tmp_path):
    target = tmp_path / "plan-x.json"
    lock = scan.lock_path(target)
    lock.touch()
    old = time.time() - 100
    os.utime(lock, (old, old))  # its holder died 100 s ago
    assert scan.load_or_compute(target, lambda beat: {"samples": 3}, stale_after=30, poll=0.05) == {
        "samples": 3
    }
    assert target.is_file() and not lock.exists()


CHILD = """
import sys, time
from pathlib import Path
import action100m.train.data.scan as scan
from action100m.train.data.config import DataConfig
from action100m.train.data.module import plan_data
real = scan.scan_shard
def slow(path):
    with open(sys.argv[3], "a") as log:
        log.write(path.name + "\\n")
    time.sleep(0.2)
    return real(path)
scan.scan_shard = slow
Path(sys.argv[4]).touch()
while not Path(sys.argv[5]).exists():
    time.sleep(0.01)
print(plan_data(DataConfig(shards=sys.argv[1], cache_dir=sys.argv[2])).describe())
"""


def test_ranks_started_together_scan_each_shard_once(shards, tmp_path):
    log, go = tmp_path / "scans.log", tmp_path / "go"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(shards),
                str(tmp_path / "cache"),
                str(log),
                str(tmp_path / f"ready{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(3)) and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children)
    assert len(set(outputs)) == 1 and "'samples'" in outputs[0]
    scanned = log.read_text().split()
    assert sorted(scanned) == sorted(p.name for p in select_scale(shards, 1.0).shards)


def test_an_unwritable_cache_names_the_key(shards, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="data.cache_dir"):
        plan_data(config(shards, blocker / "cache"))
