"""The shard set: the on-disk format shared by the dataset build, official import and training.

OUT/
  shards/{prefix}-000000.tar       WebDataset shards: per sample `{key}.json` (the record) and optional
                                   `{key}.mp4`; tar members carry no timestamps, so the same samples
                                   give the same bytes
  shards/{prefix}-000000.tar.done  the shard's marker, written last: samples, sha256, config hash
  failures/{prefix}-000000.jsonl   what failed while building that shard (video, node, stage, reason)
  sizes.json                       samples per finished shard
  failures.jsonl                   all failures, one per line
  stats.json                       counts summed over finished shards

A shard exists only once its marker does; a tar without a marker is an interrupted write and is
rebuilt. Every file is written to a temp name and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action100m.dataset.schema import validate_video_uid
from action100m.errors import Action100MError, StageError
from action100m.utils.atomic import atomic_path, write_json_atomic, write_text_atomic

SUMMED_STATS = ("videos", "nodes", "annotated_nodes", "failures", "scored_videos", "boundary_f1_sum")


class ShardError(Action100MError):
    """A shard set that cannot be read or continued."""


def stable_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def failure_line(failure: StageError) -> dict[str, Any]:
    line = {
        "video_uid": failure.video_uid,
        "node_id": failure.node_id,
        "stage": failure.stage,
        "reason": failure.reason,
    }
    line.update(getattr(failure, "detail", None) or {})
    return line


def write_tar(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> tuple[int, str]:
    """Write (key, {extension: bytes}) samples as a tar at `path`, atomically; returns (count, sha256)."""
    count = 0
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for key, files in samples:
                validate_video_uid(key)
                for extension in sorted(files):
                    data = files[extension]
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o444
                    tar.addfile(info, io.BytesIO(data))
                count += 1
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return count, digest


def read_tar(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a shard, in order."""
    current, files = None, {}
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                if key != current and current is not None:
                    yield current, files
                    files = {}
                current = key
                files[extension] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError) as err:
        raise ShardError(f"{path}: unreadable shard: {err}") from err
    if current is not None:
        yield current, files


@dataclass
class ShardSet:
    root: Path
    prefix: str = "action100m"

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    def name(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}"

    def tar_path(self, index: int) -> Path:
        return self.shards_dir / f"{self.name(index)}.tar"

    def marker_path(self, index: int) -> Path:
        return self.shards_dir / f"{self.name(index)}.tar.done"

    def marker(self, index: int) -> dict[str, Any] | None:
        path = self.marker_path(index)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ShardError(f"{path}: corrupt marker: {err}") from err

    def is_done(self, index: int, config_hash: str) -> bool:
        marker = self.marker(index)
        return marker is not None and marker["config_hash"] == config_hash and self.tar_path(index).is_file()

    def write_shard(
        self,
        index: int,
        samples: Iterable[tuple[str, dict[str, bytes]]],
        failures: list[StageError],
        config_hash: str,
        stats: dict[str, Any],
    ) -> dict[str, Any]:
        """Write shard `index` and its failures, then its marker (last, so a crash leaves no marker)."""
        self.marker_path(index).unlink(missing_ok=True)
        count, digest = write_tar(self.tar_path(index), samples)
        lines = "".join(json.dumps(failure_line(f), ensure_ascii=False) + "\n" for f in failures)
        write_text_atomic(self.root / "failures" / f"{self.name(index)}.jsonl", lines)
        marker = {
            "shard": self.tar_path(index).name,
            "samples": count,
            "sha256": digest,
            "config_hash": config_hash,
            "stats": {**stats, "failures": len(failures)},
        }
        write_json_atomic(self.marker_path(index), marker)
        return marker

    def remove_stale_temps(self, index: int) -> None:
        """Temp files of shard `index` left by a killed writer (its owner is the only one to write it)."""
        name = self.name(index)
        for folder, pattern in (
            (self.shards_dir, f".{name}.tar*.tmp"),
            (self.root / "failures", f".{name}.jsonl.*.tmp"),
        ):
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)

    def finished(self) -> list[int]:
        """Indices of the shards whose marker exists."""
        indices = []
        for path in sorted(self.shards_dir.glob(f"{self.prefix}-*.tar.done")):
            suffix = path.name[len(self.prefix) + 1 : -len(".tar.done")]
            if suffix.isdigit():
                indices.append(int(suffix))
        return indices

    def refresh_summary(self) -> dict[str, Any]:
        """Rewrite sizes.json, failures.jsonl and stats.json from the finished shards."""
        sizes, totals, failures = {}, dict.fromkeys(SUMMED_STATS, 0), []
        for index in self.finished():
            marker = self.marker(index)
            sizes[marker["shard"]] = marker["samples"]
            for key in SUMMED_STATS:
                totals[key] += marker["stats"].get(key, 0)
            failure_file = self.root / "failures" / f"{self.name(index)}.jsonl"
            if failure_file.is_file():
                failures.append(failure_file.read_text(encoding="utf-8"))
        write_json_atomic(self.root / "sizes.json", sizes)
        write_text_atomic(self.root / "failures.jsonl", "".join(failures))
        summary = {"shards": len(sizes), "samples": sum(sizes.values()), **totals}
        write_json_atomic(self.root / "stats.json", summary)
        return summary


def shard_paths(shards: str | os.PathLike) -> list[Path]:
    """The finished shards under a shard set's root or its shards/ folder (only those with a marker)."""
    folder = Path(shards)
    if (folder / "shards").is_dir():
        folder = folder / "shards"
    if not folder.is_dir():
        raise ShardError(f"{folder}: no such shard folder")
    paths = sorted(p for p in folder.glob("*.tar") if Path(f"{p}.done").is_file())
    if not paths:
        raise ShardError(f"{folder}: no finished shards (a shard counts once its .done marker exists)")
    return paths
