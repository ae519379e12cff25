"""The build's input: a manifest (.jsonl of video_uid, path, metadata), a folder of videos, or the
official annotations (.json/.parquet, or .jsonl with `videos` set) beside the folder of their videos,
read into `Entry`s with a hash of the input, and those entries cut into shards (`assign_shards`) the
same way on every run and every worker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action100m.dataset.schema import VideoRecord, read_official_json
from action100m.dataset.shards import stable_hash
from action100m.errors import ConfigError
from data_build.cache import short_hash
from data_build.config import BuildConfig

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi")


@dataclass
class Entry:
    """One input video: its id as given, where it is, and what is known of it."""

    video_uid: Any
    path: Path | None
    metadata: dict[str, Any]
    record: VideoRecord | None = None  # official annotations: the released tree
    duplicate: bool = False  # its video_uid came earlier in the input: a failure, the first one is kept


def read_input(cfg: BuildConfig) -> tuple[list[Entry], str]:
    """The input entries and a hash of the input (the build refuses to continue on another input)."""
    entries, digest = _read_entries(cfg)
    # Marked over the whole input: the copies of a video_uid may fall into different shards or batches.
    seen: set[str] = set()
    for entry in entries:
        entry.duplicate = str(entry.video_uid) in seen
        seen.add(str(entry.video_uid))
    return entries, digest


def _read_entries(cfg: BuildConfig) -> tuple[list[Entry], str]:
    source = Path(cfg.input)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        entries = [Entry(p.stem, p, {"title": p.stem}) for p in files]
        return entries, short_hash([(p.name, p.stat().st_size) for p in files])
    if not source.is_file():
        raise ConfigError(f"input: {source} does not exist")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    if source.suffix in (".parquet", ".json") or (source.suffix == ".jsonl" and cfg.videos):
        if not cfg.videos:
            raise ConfigError("videos: official annotations as input need the folder of their videos")
        if source.suffix == ".parquet":
            from action100m.dataset.official import read_official_parquet

            records = read_official_parquet(source)
        else:
            records = read_official_json(source)
        folder = Path(cfg.videos)
        entries = [Entry(r.video_uid, folder / f"{r.video_uid}.mp4", r.metadata, r) for r in records]
        return entries, digest
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"input: {source}: not a UTF-8 manifest ({err})") from err
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            entries.append(Entry(item["video_uid"], source.parent / item["path"], item.get("metadata") or {}))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"input: {source} line {number}: not a manifest entry ({err})") from err
    return entries, digest


def assign_shards(entries: list[Entry], per_shard: int) -> list[list[Entry]]:
    """Entries sorted by a hash of their id, in chunks: the same input always gives the same shards."""
    ordered = sorted(entries, key=lambda e: (stable_hash(str(e.video_uid)), str(e.path)))
    return [ordered[i : i + per_shard] for i in range(0, len(ordered), per_shard)]
