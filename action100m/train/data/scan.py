"""The data plan's pass over the records (not the videos) of the chosen shards, before training starts.

It counts the training samples the config yields (nodes that pass the filters and have a text in the
field mix), and, with semantic resampling on, the deduplicated brief actions of those nodes.

Each shard's scan is cached next to the shards (cache/scan/<shard>-<sha256>.scan), keyed by the
shard's checksum, and holds what any config needs, compactly: the shard's nodes grouped by their flags
(annotated, which fields have a text), each group's count and duration range (enough for the plan
when no duration filter cuts into a group), then per node its duration (sorted within its group) and
the index of its brief action among the shard's deduplicated ones. A plan reads only as far as its
config needs, so at full scale (147M nodes) planning without filters reads a few hundred bytes a shard.

The plan itself is computed once per run, not once per rank: the first process to create the lock
file beside the plan computes it and writes it atomically; the others wait for the file. Correctness
does not depend on the lock (the same shards and config give the same bytes, and the write is a
rename, so two writers are harmless), which is what makes it safe on a shared filesystem: a lock
whose holder stops touching it for `stale_after` seconds (the holder died) is taken over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import iter_members
from action100m.errors import Action100MError, ConfigError
from action100m.train.data.config import DataConfig
from action100m.train.data.fields import TEXT_FIELDS, FieldMix, node_texts
from action100m.train.data.resample import dedupe_key
from action100m.train.data.scale import ScaleSubset
from action100m.utils.atomic import write_bytes_atomic, write_json_atomic

SCAN_VERSION = 2
PLAN_VERSION = 1
FIELD_BITS = {name: 1 << index for index, name in enumerate(TEXT_FIELDS)}
ANNOTATED = 1 << 15
STALE_LOCK_SECONDS = 300.0


@dataclass
class ScanSummary:
    samples: int  # nodes that pass the filters and have a text in the mix
    per_field: dict[str, int]  # of those, how many have each configured field
    unreadable_records: int
    # with resampling on: deduplicated brief action -> how many of those nodes have it; else None
    brief_counts: dict[str, int] | None = None


@dataclass
class ShardScan:
    """One shard's nodes, grouped by flags (field bits | ANNOTATED), groups in ascending flag order."""

    flags: np.ndarray  # uint16, one per group
    counts: np.ndarray  # int64 nodes per group
    lowest: np.ndarray  # float64 shortest duration per group
    longest: np.ndarray  # float64 longest duration per group
    unreadable_records: int
    durations: np.ndarray | None = None  # float64 per node, group after group, ascending in each
    briefs: np.ndarray | None = None  # int32 per node: index into `texts`, -1 without a brief action
    texts: list[str] | None = None  # the shard's deduplicated brief actions, sorted


def pack_scan(
    durations: np.ndarray,
    flags: np.ndarray,
    briefs: np.ndarray,
    offsets: np.ndarray,
    blob: bytes,
    unreadable_records: int,
) -> bytes:
    """The scan file's bytes from per-node durations, flags and brief indices; brief text i is
    blob[offsets[i]:offsets[i + 1]] (UTF-8), the texts deduplicated and sorted."""
    order = np.lexsort((durations, flags))
    durations, flags, briefs = durations[order], flags[order], briefs[order]
    groups, starts, counts = np.unique(flags, return_index=True, return_counts=True)
    ends = starts + counts - 1
    arrays = [
        np.array([SCAN_VERSION, unreadable_records, len(groups)], dtype=np.int64),
        groups.astype(np.uint16),
        counts.astype(np.int64),
        durations[starts],
        durations[ends],
        durations.astype(np.float64),
        briefs.astype(np.int32),
        offsets.astype(np.int64),
        np.frombuffer(blob, dtype=np.uint8),
    ]
    out = io.BytesIO()
    for array in arrays:
        np.save(out, array, allow_pickle=False)
    return out.getvalue()


def read_scan(path: Path, depth: str) -> ShardScan | None:
    """The scan at `path` read only as deep as needed: "groups", "durations" or "briefs"; None when it
    is missing, unreadable or of another SCAN_VERSION."""
    try:
        with open(path, "rb") as handle:
            meta = np.load(handle, allow_pickle=False)
            if len(meta) != 3 or meta[0] != SCAN_VERSION:
                return None
            scan = ShardScan(*(np.load(handle, allow_pickle=False) for _ in range(4)), int(meta[1]))
            if depth == "groups":
                return scan
            scan.durations = np.load(handle, allow_pickle=False)
            if depth == "durations":
                return scan
            scan.briefs = np.load(handle, allow_pickle=False)
            offsets = np.load(handle, allow_pickle=False)
            blob = np.load(handle, allow_pickle=False).tobytes()
    except (OSError, ValueError, EOFError):
        return None
    scan.texts = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return scan


def scan_shard(path: Path) -> bytes:
    """The scan of one shard (see the module docstring), reading only its JSON members (every member
    is still checked, so a hostile shard is refused here, before training: ShardError)."""
    durations, flags, briefs, unreadable = [], [], [], 0
    for _, _, data in iter_members(path, extensions={"json"}):
        try:
            record = VideoRecord.from_json(data)
        except (Action100MError, json.JSONDecodeError, UnicodeDecodeError):
            unreadable += 1
            continue
        for node in record.nodes:
            texts = node_texts(node, record.metadata, list(TEXT_FIELDS))
            durations.append(node.end - node.start)
            flags.append(
                sum(FIELD_BITS[name] for name in texts) | (ANNOTATED * (node.annotation is not None))
            )
            brief = texts.get("action_brief")
            briefs.append(dedupe_key(brief) if brief is not None else None)
    texts = sorted({brief for brief in briefs if brief is not None})
    index = {text: i for i, text in enumerate(texts)}
    blobs = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(blob) for blob in blobs], out=offsets[1:])
    return pack_scan(
        np.array(durations, dtype=np.float64),
        np.array(flags, dtype=np.uint16),
        np.array([index.get(b, -1) for b in briefs], dtype=np.int32),
        offsets,
        b"".join(blobs),
        unreadable,
    )


def cache_folder(subset: ScaleSubset, cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else subset.root / "cache"


def _unwritable(target: Path, err: OSError) -> ConfigError:
    return ConfigError(
        f"data.cache_dir: cannot write {target}: {err.strerror or err}; set data.cache_dir "
        f"to a writable folder"
    )


def scan_path(cache: Path, shard: Path, sha256: str) -> Path:
    return cache / "scan" / f"{shard.name}-{sha256[:16]}.scan"


def cached_scan(shard: Path, sha256: str, cache: Path, depth: str) -> ShardScan:
    target = scan_path(cache, shard, sha256)
    scan = read_scan(target, depth)
    if scan is not None:
        return scan
    try:
        write_bytes_atomic(target, scan_shard(shard))
    except OSError as err:
        raise _unwritable(target, err) from err
    return read_scan(target, depth)


def _depth(cfg: DataConfig) -> str:
    return "briefs" if cfg.resample.enabled else "groups"


def summarize(
    subset: ScaleSubset, cfg: DataConfig, mix: FieldMix, heartbeat: Callable[[], None] = lambda: None
) -> ScanSummary:
    """The samples the config yields from `subset`, one shard at a time: what it holds is the counts,
    plus the brief counts with resampling on."""
    cache = cache_folder(subset, cfg)
    samples, unreadable = 0, 0
    per_field = dict.fromkeys(mix.fields, 0)
    briefs: Counter | None = Counter() if cfg.resample.enabled else None
    wanted = sum(FIELD_BITS[name] for name in mix.fields)
    low, high = cfg.min_duration, np.inf if cfg.max_duration is None else cfg.max_duration
    for shard, sha256 in zip(subset.shards, subset.sha256s, strict=True):
        scan = cached_scan(shard, sha256, cache, _depth(cfg))
        unreadable += scan.unreadable_records
        starts = np.concatenate([[0], np.cumsum(scan.counts)])
        for group, flags in enumerate(scan.flags.tolist()):
            if not flags & wanted or (cfg.annotated_only and not flags & ANNOTATED):
                continue
            if low <= scan.lowest[group] and scan.longest[group] <= high:
                first, last = starts[group], starts[group + 1]
            else:  # the filter cuts into this group: its sorted durations say where
                if scan.durations is None:
                    scan = cached_scan(shard, sha256, cache, "durations")
                durations = scan.durations[starts[group] : starts[group + 1]]
                first = starts[group] + np.searchsorted(durations, low, side="left")
                last = starts[group] + np.searchsorted(durations, high, side="right")
            count = int(last - first)
            samples += count
            for name in mix.fields:
                per_field[name] += count if flags & FIELD_BITS[name] else 0
            if briefs is not None and count:
                indices = scan.briefs[first:last]
                hits = np.bincount(indices[indices >= 0], minlength=len(scan.texts))
                briefs.update({scan.texts[i]: int(hits[i]) for i in np.flatnonzero(hits)})
        heartbeat()
    brief_counts = dict(sorted(briefs.items())) if briefs is not None else None
    return ScanSummary(samples, per_field, unreadable, brief_counts)


def check(summary: ScanSummary, subset: ScaleSubset, cfg: DataConfig, mix: FieldMix) -> ScanSummary:
    """`summary`, unless the config yields no sample or a configured field is in none of them."""
    where = f"the {len(subset.shards)} shards of data.scale={subset.scale:g} ({subset.videos} videos, {subset.nodes} nodes)"
    if summary.samples == 0:
        raise ConfigError(
            f"no training samples in {where}: no node passes the filters (min_duration="
            f"{cfg.min_duration}, max_duration={cfg.max_duration}, annotated_only="
            f"{cfg.annotated_only}) with a text in {', '.join(mix.fields)}"
        )
    for name, count in summary.per_field.items():
        if count == 0:
            raise ConfigError(
                f"data.text_fields: field {name!r} is in none of the {summary.samples} usable "
                f"nodes of {where}; drop it or build the shards with it"
            )
    return summary


def plan_key(subset: ScaleSubset, cfg: DataConfig, mix: FieldMix) -> str:
    """A digest of everything that decides the plan: the shards and their checksums, the filters, the
    fields of the mix (not their weights) and whether brief actions are counted."""
    described = {
        "scan": SCAN_VERSION,
        "plan": PLAN_VERSION,
        "fields": mix.fields,
        "min_duration": cfg.min_duration,
        "max_duration": cfg.max_duration,
        "annotated_only": cfg.annotated_only,
        "briefs": cfg.resample.enabled,
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for shard, sha256 in zip(subset.shards, subset.sha256s, strict=True):
        digest.update(f"{shard.name}\x00{sha256}\x00".encode())
    return digest.hexdigest()


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"data.cache_dir: {path}: unreadable plan: {err}; delete it to replan") from err


def _touch(lock: Path) -> None:
    try:
        os.utime(lock)
    except FileNotFoundError:
        pass  # taken over by a rank that thought this one dead: both write the same bytes


def load_or_compute(
    target: Path,
    compute: Callable[[Callable[[], None]], Any],
    stale_after: float = STALE_LOCK_SECONDS,
    poll: float = 0.5,
) -> Any:
    """The JSON at `target`, computed by `compute(heartbeat)` and written atomically by whichever
    process first creates the lock beside it; the others wait for it (see the module docstring)."""
    lock = lock_path(target)
    while True:
        found = _read_json(target)
        if found is not None:
            return found
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                idle = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # its holder just finished: the plan is there now
            if idle > stale_after:
                lock.unlink(missing_ok=True)
                continue
            time.sleep(poll)
            continue
        except OSError as err:
            raise _unwritable(lock, err) from err
        os.close(fd)
        try:
            result = compute(lambda: _touch(lock))
            try:
                write_json_atomic(target, result, indent=None)
            except OSError as err:
                raise _unwritable(target, err) from err
            return result
        finally:
            lock.unlink(missing_ok=True)
