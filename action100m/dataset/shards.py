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

Shards are read as untrusted input (an official release, another cluster's build): every member must
be a regular `<key>.<extension>` file of a known extension, within its size limit and within the file,
or the reader refuses the shard (`check_member`); nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Collection, Iterable, Iterator, Mapping
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


# The extensions a sample may carry and the largest member of each a reader accepts. A record is
# kilobytes (megabytes for a long video's tree); a clip's mp4 is at most a few GiB. A shard is data
# from elsewhere (an official release, another cluster): a member past its limit is refused before
# its bytes are read, so a forged header cannot make a reader allocate what it declares.
MEMBER_LIMITS: dict[str, int] = {"json": 64 << 20, "mp4": 4 << 30}
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_KINDS = {
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
    tarfile.DIRTYPE: "directory",
    tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):g} {unit}"
    return f"{count} bytes"


def check_member(
    path: str | os.PathLike,
    member: tarfile.TarInfo,
    file_size: int,
    limits: Mapping[str, int] = MEMBER_LIMITS,
) -> tuple[str, str]:
    """(key, extension) of a shard member that is a regular `<key>.<extension>` file of a known
    extension, within its size limit and within the file; else ShardError naming shard and member."""
    name = member.name
    where = f"{path}: member {name!r}"
    if name.startswith("/"):
        raise ShardError(f"{where}: absolute name")
    if ".." in name.split("/"):
        raise ShardError(f"{where}: '..' in the name")
    if "/" in name:
        raise ShardError(f"{where}: a directory part in the name (members are <key>.<extension>)")
    key, _, extension = name.partition(".")
    try:
        validate_video_uid(key)
    except Action100MError as err:
        raise ShardError(f"{where}: {err}") from err
    if extension not in limits:
        raise ShardError(f"{where}: unknown extension {extension!r} (known: {', '.join(sorted(limits))})")
    if member.type not in _REGULAR:
        raise ShardError(f"{where}: not a regular file ({_KINDS.get(member.type, f'type {member.type!r}')})")
    limit = limits[extension]
    if member.size > limit:
        raise ShardError(
            f"{where}: {member.size} bytes, over the {_size(limit)} limit for .{extension} members"
        )
    if member.offset_data + member.size > file_size:
        raise ShardError(
            f"{where}: truncated shard: the member declares {member.size} bytes, the file ends "
            f"{max(file_size - member.offset_data, 0)} bytes into it"
        )
    return key, extension


def iter_members(
    path: str | os.PathLike,
    extensions: Collection[str] | None = None,
    limits: Mapping[str, int] = MEMBER_LIMITS,
) -> Iterator[tuple[str, str, bytes]]:
    """(key, extension, bytes) of each member of the plain (uncompressed) tar at `path`, in order, every
    member checked by `check_member`; only members of `extensions` (default: all) are read and yielded.
    Nothing is extracted to disk and no link is followed. A tar that stops before its end-of-archive
    block (cut at a member boundary, or a corrupt header, which tarfile takes for the end) is refused."""
    end, last = 0, None
    try:
        with open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            file_size = os.fstat(handle.fileno()).st_size
            for member in tar:
                key, extension = check_member(path, member, file_size, limits)
                end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                last = member.name
                if extensions is None or extension in extensions:
                    yield key, extension, tar.extractfile(member).read()
            handle.seek(end)
            trailer = handle.read(tarfile.BLOCKSIZE)
    except (tarfile.TarError, OSError) as err:
        raise ShardError(f"{path}: unreadable shard: {err}") from err
    if trailer != bytes(tarfile.BLOCKSIZE):
        after = f"after member {last!r}" if last is not None else "at its start"
        raise ShardError(f"{path}: truncated or corrupt shard: no end-of-archive block {after} (byte {end})")


def read_tar(
    path: str | os.PathLike, limits: Mapping[str, int] = MEMBER_LIMITS
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a shard, in order; ShardError at the first member
    that fails `check_member` (the samples before it are yielded)."""
    current, files = None, {}
    for key, extension, data in iter_members(path, limits=limits):
        if key != current and current is not None:
            yield current, files
            files = {}
        current = key
        files[extension] = data
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
