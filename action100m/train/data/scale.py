"""Data scale: a nested subset of the shard set, the first k shards of one fixed shuffled order.

The order sorts shards by a hash of their file name, so it does not depend on how many shards there
are or on the scale: 1% ⊂ 10% ⊂ 100%, and a shard keeps its place when the set grows.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from action100m.dataset.shards import ShardError, shard_paths, stable_hash
from action100m.errors import ConfigError


@dataclass(frozen=True)
class ScaleSubset:
    scale: float
    root: Path  # the shard set (the folder holding shards/)
    shards: tuple[Path, ...]  # the chosen shards, in the fixed order
    total_shards: int
    videos: int  # from the shards' markers
    nodes: int
    sha256s: tuple[str, ...]  # the chosen shards' checksums, from their markers


def shard_order(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda path: (stable_hash(path.name), path.name))


def _marker(path: Path) -> dict:
    try:
        marker = json.loads(Path(f"{path}.done").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"data.shards: {path.name}: unreadable marker: {err}") from err
    if not isinstance(marker, dict) or not isinstance(marker.get("sha256"), str):
        raise ConfigError(f"data.shards: {path}.done: a marker without the shard's sha256")
    return marker


def select_scale(shards: str | os.PathLike, scale: float) -> ScaleSubset:
    """The first floor(scale · N) shards of the fixed order; an empty choice is an error."""
    if not 0 < scale <= 1:
        raise ConfigError(f"data.scale: {scale} is not in (0, 1]")
    try:
        paths = shard_paths(shards)
    except ShardError as err:
        raise ConfigError(f"data.shards: {err}") from err
    count = math.floor(scale * len(paths) + 1e-9)
    if count == 0:
        raise ConfigError(
            f"data.scale={scale:g} of {len(paths)} shards selects no shard "
            f"(the smallest scale here is {1 / len(paths):.3g})"
        )
    chosen = shard_order(paths)[:count]
    markers = [_marker(path) for path in chosen]
    videos = sum(marker["samples"] for marker in markers)
    nodes = sum(marker.get("stats", {}).get("nodes", 0) for marker in markers)
    if videos == 0:
        raise ConfigError(f"data.scale={scale:g}: the {count} chosen shards hold no videos")
    sha256s = tuple(marker["sha256"] for marker in markers)
    return ScaleSubset(scale, paths[0].parent.parent, tuple(chosen), len(paths), videos, nodes, sha256s)
