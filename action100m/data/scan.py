"""One pass over the records (not the videos) of the chosen shards, before training starts.

It counts the training samples the config yields (nodes that pass the filters and have a text in the
field mix), fails early when there are none or when a configured field is in no node, and keeps the
brief actions for semantic resampling. Each shard's scan is cached next to the shards, keyed by the
shard's checksum, and holds what any config needs: per node its duration, whether it is annotated,
which fields it has a text in, and its brief action.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from action100m.data.config import DataConfig
from action100m.data.fields import TEXT_FIELDS, FieldMix, node_texts
from action100m.data.scale import ScaleSubset
from action100m.errors import Action100MError, ConfigError
from action100m.schema import VideoRecord
from action100m.utils.atomic import write_json_atomic

SCAN_VERSION = 1
FIELD_BITS = {name: 1 << index for index, name in enumerate(TEXT_FIELDS)}


@dataclass
class ScanSummary:
    samples: int  # nodes that pass the filters and have a text in the mix
    per_field: dict[str, int]  # of those, how many have each configured field
    briefs: list[str]  # their brief actions, where they have one (semantic resampling clusters these)
    unreadable_records: int


def scan_shard(path: Path) -> dict:
    """Per node [duration, annotated, field bits, brief action or None], reading only the JSON members."""
    nodes, unreadable = [], 0
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.name.endswith(".json"):
                continue
            try:
                record = VideoRecord.from_json(tar.extractfile(member).read())
            except (Action100MError, json.JSONDecodeError, UnicodeDecodeError):
                unreadable += 1
                continue
            for node in record.nodes:
                texts = node_texts(node, record.metadata, list(TEXT_FIELDS))
                bits = sum(FIELD_BITS[name] for name in texts)
                nodes.append([round(node.end - node.start, 6), node.annotation is not None, bits,
                              texts.get("action_brief")])  # fmt: skip
    return {"version": SCAN_VERSION, "nodes": nodes, "unreadable_records": unreadable}


def cache_folder(subset: ScaleSubset, cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else subset.root / "cache"


def cached_scan(path: Path, cache: Path) -> dict:
    marker = json.loads(Path(f"{path}.done").read_text(encoding="utf-8"))
    target = cache / "scan" / f"{path.name}-{marker['sha256'][:16]}.json"
    if target.is_file():
        scan = json.loads(target.read_text(encoding="utf-8"))
        if scan.get("version") == SCAN_VERSION:
            return scan
    scan = scan_shard(path)
    try:
        write_json_atomic(target, scan, indent=None)
    except OSError as err:
        raise ConfigError(f"data.cache_dir: cannot write {target}: {err.strerror or err}; set data.cache_dir "
                          f"to a writable folder") from err  # fmt: skip
    return scan


def summarize(subset: ScaleSubset, cfg: DataConfig, mix: FieldMix) -> ScanSummary:
    """The samples the config yields from `subset`; a `ConfigError` when there are none, or when a
    configured field is in none of them."""
    cache = cache_folder(subset, cfg)
    samples, unreadable, briefs = 0, 0, []
    per_field = dict.fromkeys(mix.fields, 0)
    wanted = sum(FIELD_BITS[name] for name in mix.fields)
    for path in subset.shards:
        scan = cached_scan(path, cache)
        unreadable += scan["unreadable_records"]
        for duration, annotated, bits, brief in scan["nodes"]:
            if duration < cfg.min_duration or (cfg.max_duration is not None and duration > cfg.max_duration):
                continue
            if (cfg.annotated_only and not annotated) or not bits & wanted:
                continue
            samples += 1
            for name in mix.fields:
                per_field[name] += bool(bits & FIELD_BITS[name])
            if brief is not None:
                briefs.append(brief)
    where = f"the {len(subset.shards)} shards of data.scale={subset.scale:g} ({subset.videos} videos, {subset.nodes} nodes)"
    if samples == 0:
        raise ConfigError(f"no training samples in {where}: no node passes the filters (min_duration="
                          f"{cfg.min_duration}, max_duration={cfg.max_duration}, annotated_only="
                          f"{cfg.annotated_only}) with a text in {', '.join(mix.fields)}")  # fmt: skip
    for name, count in per_field.items():
        if count == 0:
            raise ConfigError(f"data.text_fields: field {name!r} is in none of the {samples} usable nodes of "
                              f"{where}; drop it or build the shards with it")  # fmt: skip
    return ScanSummary(samples, per_field, briefs, unreadable)
