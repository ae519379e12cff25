"""What a viewer site shows: records (and their videos) from a shard set or from release annotations.

Both sources first list their video_uids without parsing a record, so that a selection (`--videos N`:
the first N by video_uid; `--videos UID ...`) is checked and resolved before any page is made, then
yield the chosen records one at a time: a large set is never held in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action100m.dataset.official import Annotations, find_video
from action100m.dataset.schema import VideoRecord, from_official
from action100m.dataset.shards import iter_members, read_tar, shard_paths
from action100m.errors import Action100MError, RecordError

Selection = int | Sequence[str] | None
# release rows are converted this many at a time (a Parquet table stays Arrow until then)
_ROW_CHUNK = 64


class ViewError(Action100MError):
    """A viewer input (shard set, annotations, selection) or output folder that cannot be used."""


@dataclass
class Entry:
    """One video to show: its record, its video (a shard's bytes or a file; None: no video) and the
    failures recorded for it."""

    record: VideoRecord
    video: bytes | Path | None
    failures: list[dict[str, Any]]


@dataclass
class Source:
    uids: list[str]  # the chosen videos, sorted
    entries: Iterator[Entry]  # the same videos, in the order the source stores them
    failures_total: int  # every failure the source recorded, for the chosen videos or not


def choose(uids: Sequence[str], selection: Selection, where: str) -> list[str]:
    """The sorted uids that `selection` picks from `uids`: all (None), the first N, or the named ones."""
    ordered = sorted(uids)
    if selection is None:
        return ordered
    if isinstance(selection, int):
        if selection < 1:
            raise ViewError(f"--videos N must be at least 1, got {selection}")
        return ordered[:selection]
    known = set(ordered)
    for uid in selection:
        if uid not in known:
            raise ViewError(f"{where}: no video {uid!r} (it holds {len(ordered)} videos)")
    return sorted(set(selection))


def _read_failures(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    failures = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            failure = json.loads(line)
        except json.JSONDecodeError as err:
            raise ViewError(f"{path} line {number}: not JSON ({err})") from err
        if not isinstance(failure, dict):
            raise ViewError(f"{path} line {number}: a failure must be an object")
        failures.append(failure)
    return failures


def _by_video(failures: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for failure in failures:
        grouped.setdefault(str(failure.get("video_uid")), []).append(failure)
    return grouped


def shard_source(shards: str | os.PathLike, selection: Selection = None) -> Source:
    """The videos of a shard set (OUT or OUT/shards), with the failures of OUT/failures.jsonl."""
    paths = shard_paths(shards)
    home: dict[str, Path] = {}
    for path in paths:
        for key, _, _ in iter_members(path, {"json"}):
            if key in home:
                raise ViewError(f"{path}: video {key} is also in {home[key]}")
            home[key] = path
    chosen = choose(list(home), selection, str(shards))
    failures = _read_failures(paths[0].parent.parent / "failures.jsonl")
    grouped = _by_video(failures)

    def entries() -> Iterator[Entry]:
        wanted = set(chosen)
        for path in sorted({home[uid] for uid in chosen}):
            for key, files in read_tar(path):
                if key not in wanted:
                    continue
                if "json" not in files:
                    raise ViewError(f"{path}: sample {key} has no json record")
                try:
                    record = VideoRecord.from_json(files["json"]).validate()
                except (RecordError, json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise ViewError(f"{path}: sample {key}: {err}") from err
                if record.video_uid != key:
                    raise ViewError(f"{path}: sample {key} holds the record of video {record.video_uid}")
                yield Entry(record, files.get("mp4"), grouped.get(key, []))

    return Source(chosen, entries(), len(failures))


def release_source(
    annotations: str | os.PathLike, videos: str | os.PathLike | None = None, selection: Selection = None
) -> Source:
    """The rows of a release file (.parquet, .json, .jsonl), each with its video from the `videos`
    folder when there is one (`find_video`); a video that is not there is shown without a player."""
    data = Annotations(annotations)
    folder = Path(videos) if videos is not None else None
    if folder is not None and not folder.is_dir():
        raise ViewError(f"{folder}: no such video folder")
    row_of: dict[str, int] = {}
    for index, uid in enumerate(data.uids):
        if not isinstance(uid, str):
            raise ViewError(f"{data.path}: row {index}: video_uid must be a string, got {uid!r}")
        if uid in row_of:
            raise ViewError(f"{data.path}: video {uid} is in rows {row_of[uid]} and {index}")
        row_of[uid] = index
    chosen = choose(list(row_of), selection, str(data.path))

    def entries() -> Iterator[Entry]:
        indices = sorted(row_of[uid] for uid in chosen)
        for start in range(0, len(indices), _ROW_CHUNK):
            for row in data.rows(indices[start : start + _ROW_CHUNK]):
                try:
                    record = from_official(row).validate()
                except RecordError as err:
                    raise ViewError(f"{data.path}: {err}") from err
                video = find_video(folder, record.video_uid) if folder is not None else None
                yield Entry(record, video, [])

    return Source(chosen, entries(), 0)
