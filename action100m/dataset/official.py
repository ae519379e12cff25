"""The official Action100M release on disk (Parquet, as released; JSON; JSON Lines), both ways.

export: finished shards → release rows {video_uid, metadata, nodes [{..., plm_action, plm_caption,
llama3_caption, gpt}]}. Parquet keeps the release's columns: `metadata` a struct, `nodes` a list of
structs. One Parquet file has one schema, so a key that only some rows have reads back as null in
the others, and an integer column that also holds floats reads back as floats; JSON and JSON Lines
keep every row exactly as it is.

import: release annotations plus the user's own copies of the videos → training shards in the
builder's layout (`json` = our record, `mp4` = the video's bytes as found, or re-encoded). Records
are checked against the schema only, never against the video: a user's copy may be cut or encoded
differently from the one the release was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from tqdm import tqdm

from action100m.dataset.schema import (
    Provenance,
    VideoRecord,
    from_official,
    official_columns,
    official_rows,
    to_official,
)
from action100m.dataset.shards import ShardError, ShardSet, read_tar, shard_paths, stable_hash
from action100m.errors import Action100MError, RecordError, StageError
from action100m.utils.atomic import atomic_path, write_text_atomic
from action100m.video import VideoError, open_video
from action100m.video.reencode import reencode

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi")  # the order is the preference
EXPORT_SUFFIXES = (".parquet", ".json", ".jsonl")
IMPORT_FORMAT = 1  # bump when the same inputs would give other shard bytes
IMPORT_STAGE = "import"

_TEXT = pa.string()
# The node columns are fixed so that every export has the same schema, even one whose records have
# no gpt annotation or frame caption yet (inference alone would give those columns the null type).
_NODE_TYPE = pa.struct(
    [
        ("node_id", _TEXT),
        ("parent_id", _TEXT),
        ("level", pa.int64()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("plm_action", _TEXT),
        ("plm_caption", _TEXT),
        ("llama3_caption", _TEXT),
        (
            "gpt",
            pa.struct(
                [
                    ("summary", pa.struct([("brief", _TEXT), ("detailed", _TEXT)])),
                    ("action", pa.struct([("brief", _TEXT), ("detailed", _TEXT), ("actor", _TEXT)])),
                ]
            ),
        ),
    ]
)
_FIXED_COLUMNS = pa.schema([("video_uid", _TEXT), ("nodes", pa.list_(_NODE_TYPE))])
_USE_JSONL = " (export to .jsonl keeps any record as it is)"


class OfficialError(Action100MError):
    """Release annotations, or an export or import target, that cannot be used."""


# -- reading the release ------------------------------------------------------------------------------


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise OfficialError(f"{path}: cannot read Parquet: {err}") from err


def _read_json_rows(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            rows = []
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise OfficialError(f"{path} line {number}: not JSON ({err})") from err
            return rows
        return official_rows(json.loads(text))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecordError) as err:
        raise OfficialError(f"{path}: cannot read: {err}") from err


def read_official_parquet(path: str | os.PathLike) -> list[VideoRecord]:
    """Records from a release Parquet file; a row that breaks the schema raises `RecordError`."""
    path = Path(path)
    records = []
    for row in _read_parquet(path).to_pylist():
        try:
            records.append(from_official(row))
        except RecordError as err:
            raise RecordError(f"{path}: {err}") from err
    return records


class Annotations:
    """The rows of one release file. A Parquet file stays an Arrow table (several times smaller than
    the same rows as Python objects) and rows are converted one shard at a time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise OfficialError(f"{self.path}: no such annotations file")
        self._table: pa.Table | None = None
        self._rows: list[Any] = []
        if self.path.suffix == ".parquet":
            self._table = _read_parquet(self.path)
            if "video_uid" not in self._table.column_names:
                raise OfficialError(f"{self.path}: no video_uid column (columns: {self._table.column_names})")
            self.uids: list[Any] = self._table.column("video_uid").to_pylist()
        elif self.path.suffix in (".json", ".jsonl"):
            self._rows = _read_json_rows(self.path)
            self.uids = [row.get("video_uid") if isinstance(row, dict) else None for row in self._rows]
        else:
            raise OfficialError(f"{self.path}: annotations must be .parquet, .json or .jsonl")

    def rows(self, indices: list[int]) -> list[Any]:
        if self._table is not None:
            return self._table.take(indices).to_pylist()
        return [self._rows[i] for i in indices]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()


# -- export ---------------------------------------------------------------------------------------------


def _shard_records(shards: str | os.PathLike) -> Iterator[tuple[Path, list[VideoRecord]]]:
    for path in shard_paths(shards):
        records = []
        for key, files in read_tar(path):
            if "json" not in files:
                raise ShardError(f"{path}: sample {key} has no json record")
            try:
                records.append(VideoRecord.from_json(files["json"]))
            except (RecordError, json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ShardError(f"{path}: sample {key}: {err}") from err
        yield path, records


def _parquet_schema(shards: str | os.PathLike) -> pa.Schema:
    """One schema for all rows: the fixed columns, then whatever the metadata and extra fields hold."""
    schemas = [_FIXED_COLUMNS]
    for path, records in _shard_records(shards):
        try:
            if records:
                schemas.append(pa.Table.from_pylist([to_official(r) for r in records]).schema)
        except pa.ArrowException as err:
            raise OfficialError(f"{path}: rows do not fit one Parquet schema: {err}{_USE_JSONL}") from err
    if len(schemas) == 1:
        raise OfficialError(f"{shards}: the finished shards hold no records")
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
    except pa.ArrowException as err:
        raise OfficialError(f"{shards}: records disagree on a field's type: {err}{_USE_JSONL}") from err
    first = ["video_uid", "metadata", "nodes"]
    return pa.schema([unified.field(name) for name in first + [n for n in unified.names if n not in first]])


def _write_parquet(shards: str | os.PathLike, out: Path) -> int:
    schema = _parquet_schema(shards)
    count = 0
    with atomic_path(out) as tmp:
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                for _, records in _shard_records(shards):
                    rows = [to_official(record) for record in records]
                    if rows:
                        writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                        count += len(rows)
        except pa.ArrowException as err:
            raise OfficialError(f"{out}: cannot write Parquet: {err}{_USE_JSONL}") from err
    return count


def export_official(shards: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the records of the finished shards as release rows to `out` (.parquet, .json in the sample's
    column-oriented layout, or .jsonl), atomically; returns the number of rows. Rows keep the shards'
    order: shard by shard, samples in shard order."""
    out = Path(out)
    if out.suffix not in EXPORT_SUFFIXES:
        raise OfficialError(f"{out}: the output must end in {', '.join(EXPORT_SUFFIXES)}")
    if out.suffix == ".parquet":
        return _write_parquet(shards, out)
    records = [record for _, shard in _shard_records(shards) for record in shard]
    if out.suffix == ".jsonl":
        text = "".join(json.dumps(to_official(r), ensure_ascii=False) + "\n" for r in records)
    else:
        text = json.dumps(official_columns(records), indent=2)  # byte for byte the sample's layout
    write_text_atomic(out, text)
    return len(records)


# -- import ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    samples_per_shard: int = 100  # the builder's default, so both assign a video to the same shard
    video: bool = True  # False: records only, no video looked up or stored
    reencode_short_side: int | None = None
    reencode_fps: float | None = None
    crf: int = 23

    @property
    def reencodes(self) -> bool:
        return self.reencode_short_side is not None or self.reencode_fps is not None


def find_video(folder: Path, video_uid: str) -> Path | None:
    """`folder/<uid>.<ext>` for the known extensions (in their order), else the first video file of
    `folder/<uid>/` by name."""
    for extension in VIDEO_EXTENSIONS:
        path = folder / f"{video_uid}{extension}"
        if path.is_file():
            return path
    inner = folder / video_uid
    if inner.is_dir():
        files = sorted(p for p in inner.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if files:
            return files[0]
    return None


def _video_bytes(path: Path, options: ImportOptions) -> bytes:
    with open_video(path, backend="pyav") as video:
        video.read_frames([0])  # a file that does not decode must not reach a shard
        if options.reencodes:
            return reencode(video, options.reencode_short_side, options.reencode_fps, options.crf)
    return path.read_bytes()


def _import_sample(
    row: Any, duplicate_of: int | None, videos: Path | None, options: ImportOptions, config_hash: str
) -> tuple[VideoRecord, dict[str, bytes]]:
    uid = str(row.get("video_uid")) if isinstance(row, dict) else "?"
    try:
        record = from_official(row).validate()
    except RecordError as err:
        raise StageError(uid, IMPORT_STAGE, f"invalid record: {err}") from err
    if duplicate_of is not None:
        raise StageError(uid, IMPORT_STAGE, f"duplicate video_uid: row {duplicate_of} has it too and is kept")
    record.provenance = Provenance(config_hash=config_hash, extra={"source": "action100m-official-import"})
    files = {"json": record.to_json().encode("utf-8")}
    if videos is not None:
        path = find_video(videos, uid)
        if path is None:
            raise StageError(uid, IMPORT_STAGE, f"no video in {videos} (looked for {uid}.<ext> and {uid}/*)")
        try:
            files["mp4"] = _video_bytes(path, options)
        except (VideoError, OSError) as err:
            raise StageError(uid, IMPORT_STAGE, f"unreadable video: {err}") from err
    return record, files


def _check_previous(shard_set: ShardSet, config_hash: str) -> None:
    for index in shard_set.finished():
        previous = shard_set.marker(index)["config_hash"]
        if previous != config_hash:
            raise OfficialError(
                f"{shard_set.root}: holds shards made from other annotations or options (config hash "
                f"{previous}, now {config_hash}); use another --out or remove its shards/"
            )


def import_official(
    annotations: str | os.PathLike,
    videos: str | os.PathLike | None,
    out: str | os.PathLike,
    options: ImportOptions = ImportOptions(),
    retry_failed: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Build training shards under `out` from release annotations and the videos under `videos`.

    Rows are sorted by the sha1 of their video_uid and cut into shards of `samples_per_shard`, so the
    same inputs give byte-identical shards. A row that breaks the schema, repeats a video_uid, or whose
    video is missing or does not decode becomes a failure (stage "import") and stays out of the shard.
    Shards finished by an earlier run with the same inputs and options are skipped (`retry_failed`:
    rebuilt if they had failures, e.g. after adding missing videos)."""
    if options.samples_per_shard < 1:
        raise OfficialError(f"samples per shard must be at least 1, got {options.samples_per_shard}")
    if options.video and videos is None:
        raise OfficialError("the folder of the videos is needed (or import the records only, without video)")
    if not options.video and (videos is not None or options.reencodes):
        raise OfficialError("records only (no video): a video folder or re-encoding makes no sense")
    folder = Path(videos) if videos is not None else None
    if folder is not None and not folder.is_dir():
        raise OfficialError(f"{folder}: no such video folder")
    data = Annotations(annotations)
    digest = data.sha256()
    settings = {"format": IMPORT_FORMAT, "annotations_sha256": digest, **asdict(options)}
    config_hash = stable_hash(json.dumps(settings, sort_keys=True))[:16]
    shard_set = ShardSet(out)
    _check_previous(shard_set, config_hash)
    config = {
        "annotations": str(data.path),
        "videos": str(folder) if folder else None,
        **settings,
        "config_hash": config_hash,
    }
    write_text_atomic(shard_set.root / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    order = sorted(range(len(data.uids)), key=lambda i: (stable_hash(str(data.uids[i])), i))
    first_row: dict[str, int] = {}
    for i in range(len(data.uids)):
        first_row.setdefault(str(data.uids[i]), i)
    shards = [
        order[i : i + options.samples_per_shard] for i in range(0, len(order), options.samples_per_shard)
    ]

    built = skipped = 0
    bar = tqdm(total=len(order), unit="video", desc="import", disable=not progress, file=sys.stderr)
    for index, chunk in enumerate(shards):
        marker = shard_set.marker(index)
        redo = retry_failed and marker is not None and marker["stats"]["failures"] > 0
        if shard_set.is_done(index, config_hash) and not redo:
            skipped += 1
            bar.update(len(chunk))
            continue
        records, samples, failures = [], [], []
        for i, row in zip(chunk, data.rows(chunk), strict=True):
            first = first_row[str(data.uids[i])]
            try:
                record, files = _import_sample(
                    row, first if first != i else None, folder, options, config_hash
                )
                records.append(record)
                samples.append((record.video_uid, files))
            except StageError as failure:
                failures.append(failure)
            bar.update(1)
        stats = {
            "videos": len(samples),
            "nodes": sum(len(r.nodes) for r in records),
            "annotated_nodes": sum(n.annotation is not None for r in records for n in r.nodes),
        }
        shard_set.write_shard(index, samples, failures, config_hash, stats)
        built += 1
    bar.close()
    return {**shard_set.refresh_summary(), "built": built, "skipped": skipped}
