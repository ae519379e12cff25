"""The video record: one source video, its metadata and its tree of temporal segments (nodes).

Our JSON uses neutral field names (`frame_caption`, `segment_caption`, `action_label`, `annotation`);
the official Action100M release names the same fields after the models that made them
(`llama3_caption`, `plm_caption`, `plm_action`, `gpt`). `from_official` / `to_official` convert
between the two without loss: unknown fields ride along in `extra`.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from action100m.errors import RecordError

SCHEMA_VERSION = 1
NOT_APPLICABLE = "N/A"
# A video_uid names a folder and files (work/videos/<uid>/, .<uid>.json.*.tmp): it must fit in a file name.
VIDEO_UID_MAX = 128
VIDEO_UID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{VIDEO_UID_MAX}}}")
# Children must tile their parent; spans are float32 seconds in the release, so compare with slack.
SPAN_TOLERANCE = 1e-6

# official field -> our field, in the release's key order
OFFICIAL_NODE_FIELDS = {
    "node_id": "node_id",
    "parent_id": "parent_id",
    "level": "level",
    "start": "start",
    "end": "end",
    "plm_action": "action_label",
    "plm_caption": "segment_caption",
    "llama3_caption": "frame_caption",
    "gpt": "annotation",
}
_NODE_FIELDS = (
    "node_id",
    "parent_id",
    "level",
    "start",
    "end",
    "frame_caption",
    "segment_caption",
    "action_label",
    "annotation",
    "provenance",
)


def validate_video_uid(video_uid: Any) -> str:
    """Return `video_uid` if it is safe as a sample key and a file name, else raise `RecordError`."""
    if not isinstance(video_uid, str) or not VIDEO_UID_PATTERN.fullmatch(video_uid):
        raise RecordError(
            f"invalid video_uid {reprlib.repr(video_uid)}: must match [A-Za-z0-9_-]+, "
            f"at most {VIDEO_UID_MAX} characters"
        )
    return video_uid


@dataclass
class Annotation:
    """The LLM's structured answer for one node; action fields are "N/A" when no action is visible."""

    summary_brief: str
    summary_detailed: str
    action_brief: str
    action_detailed: str
    actor: str

    @property
    def has_action(self) -> bool:
        return self.action_brief.strip() != NOT_APPLICABLE

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {
            "summary": {"brief": self.summary_brief, "detailed": self.summary_detailed},
            "action": {"brief": self.action_brief, "detailed": self.action_detailed, "actor": self.actor},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "annotation") -> Annotation:
        shape = {"summary": ("brief", "detailed"), "action": ("brief", "detailed", "actor")}
        if not isinstance(data, dict) or set(data) != set(shape):
            raise RecordError(f"{where}: annotation must have exactly the keys 'summary' and 'action'")
        for group, keys in shape.items():
            part = data[group]
            if not isinstance(part, dict) or set(part) != set(keys):
                raise RecordError(f"{where}: annotation.{group} must have exactly the keys {list(keys)}")
            for key in keys:
                if not isinstance(part[key], str):
                    raise RecordError(f"{where}: annotation.{group}.{key} must be a string")
        summary, action = data["summary"], data["action"]
        return cls(
            summary["brief"], summary["detailed"], action["brief"], action["detailed"], action["actor"]
        )


@dataclass
class Provenance:
    """How a record was made: model ids per role, prompt versions, refinement rounds, config hash."""

    models: dict[str, str] = field(default_factory=dict)
    prompt_versions: dict[str, str] = field(default_factory=dict)
    refine_rounds: int | None = None
    config_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": dict(self.models),
            "prompt_versions": dict(self.prompt_versions),
            "refine_rounds": self.refine_rounds,
            "config_hash": self.config_hash,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        data = dict(data)
        return cls(
            models=dict(data.pop("models", {})),
            prompt_versions=dict(data.pop("prompt_versions", {})),
            refine_rounds=data.pop("refine_rounds", None),
            config_hash=data.pop("config_hash", None),
            extra=data,
        )


@dataclass
class Node:
    """One temporal segment [start, end) seconds; `level` is its depth, the root's is 0."""

    node_id: str
    parent_id: str | None
    level: int
    start: float
    end: float
    frame_caption: str | None = None
    segment_caption: str | None = None
    action_label: str | None = None
    annotation: Annotation | None = None
    provenance: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "node_id": self.node_id,
            "parent_id": self.parent_id,
            "level": self.level,
            "start": self.start,
            "end": self.end,
            "frame_caption": self.frame_caption,
            "segment_caption": self.segment_caption,
            "action_label": self.action_label,
            "annotation": self.annotation.to_dict() if self.annotation else None,
        }
        if self.provenance is not None:
            data["provenance"] = self.provenance
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Node:
        _check_node_types(data, where)
        annotation = data.get("annotation")
        return cls(
            node_id=data["node_id"],
            parent_id=data["parent_id"],
            level=data["level"],
            start=data["start"],
            end=data["end"],
            frame_caption=data.get("frame_caption"),
            segment_caption=data.get("segment_caption"),
            action_label=data.get("action_label"),
            annotation=Annotation.from_dict(annotation, where) if annotation is not None else None,
            provenance=data.get("provenance"),
            extra={k: v for k, v in data.items() if k not in _NODE_FIELDS},
        )


def _check_node_types(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise RecordError(f"{where}: a node must be an object, got {type(data).__name__}")
    for key in ("node_id", "parent_id", "level", "start", "end"):
        if key not in data:
            raise RecordError(f"{where}: missing '{key}'")
    if not isinstance(data["node_id"], str) or not data["node_id"]:
        raise RecordError(f"{where}: node_id must be a non-empty string")
    if data["parent_id"] is not None and not isinstance(data["parent_id"], str):
        raise RecordError(f"{where}: parent_id must be a string or null")
    if not isinstance(data["level"], int) or isinstance(data["level"], bool):
        raise RecordError(f"{where}: level must be an integer")
    for key in ("start", "end"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecordError(f"{where}: {key} must be a finite number, got {value!r}")


@dataclass
class VideoRecord:
    """One sample of the dataset: a video, its metadata (title, description, duration, transcript,
    ...) and its nodes as a flat list whose parent links form the segment tree."""

    video_uid: str
    metadata: dict[str, Any]
    nodes: list[Node]
    provenance: Provenance | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- tree -------------------------------------------------------------------------------------

    @property
    def root(self) -> Node:
        roots = [node for node in self.nodes if node.parent_id is None]
        if len(roots) != 1:
            raise RecordError(f"video {self.video_uid}: expected exactly one root node, found {len(roots)}")
        return roots[0]

    def children(self) -> dict[str, list[Node]]:
        """node_id → its children in time order (leaves are absent)."""
        kids: dict[str, list[Node]] = defaultdict(list)
        for node in self.nodes:
            if node.parent_id is not None:
                kids[node.parent_id].append(node)
        for siblings in kids.values():
            siblings.sort(key=lambda n: n.start)
        return dict(kids)

    def leaves(self) -> list[Node]:
        parents = self.children()
        return [node for node in self.nodes if node.node_id not in parents]

    def validate(self, duration_tolerance: float = 1.0) -> VideoRecord:
        """Raise `RecordError` (one line, naming the video and node) unless the record is well formed:
        a safe id; unique node ids; one root at level 0; every parent present and one level up; spans
        inside the video; children that tile their parent exactly."""
        uid = validate_video_uid(self.video_uid)
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            if node.node_id in by_id:
                raise RecordError(f"video {uid}: duplicate node_id {node.node_id}")
            by_id[node.node_id] = node
        root = self.root
        if root.level != 0:
            raise RecordError(f"video {uid}: root node {root.node_id} has level {root.level}, expected 0")
        duration = self.metadata.get("duration")
        for node in self.nodes:
            where = f"video {uid}: node {node.node_id}"
            if not 0.0 <= node.start < node.end:
                raise RecordError(f"{where}: span [{node.start}, {node.end}] is empty or negative")
            if isinstance(duration, int | float) and node.end > duration + duration_tolerance:
                raise RecordError(f"{where}: ends at {node.end}s, after the video's {duration}s")
            if node.parent_id is None:
                continue
            parent = by_id.get(node.parent_id)
            if parent is None:
                raise RecordError(f"{where}: parent {node.parent_id} is not in the record")
            if node.level != parent.level + 1:
                raise RecordError(f"{where}: level {node.level} under a parent at level {parent.level}")
        for parent_id, kids in self.children().items():
            _check_tiling(uid, by_id[parent_id], kids)
        return self

    # -- our JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "video_uid": self.video_uid,
            "metadata": self.metadata,
            "nodes": [node.to_dict() for node in self.nodes],
        }
        if self.provenance is not None:
            data["provenance"] = self.provenance.to_dict()
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoRecord:
        if not isinstance(data, dict) or "video_uid" not in data or "nodes" not in data:
            raise RecordError("a video record must be an object with 'video_uid' and 'nodes'")
        uid = validate_video_uid(data["video_uid"])
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise RecordError(f"video {uid}: schema_version {version} is not supported ({SCHEMA_VERSION} is)")
        known = ("schema_version", "video_uid", "metadata", "nodes", "provenance")
        provenance = data.get("provenance")
        return cls(
            video_uid=uid,
            metadata=dict(data.get("metadata") or {}),
            nodes=[Node.from_dict(n, f"video {uid}: node #{i}") for i, n in enumerate(data["nodes"])],
            provenance=Provenance.from_dict(provenance) if provenance is not None else None,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> VideoRecord:
        return cls.from_dict(json.loads(text))


def _check_tiling(uid: str, parent: Node, kids: list[Node]) -> None:
    where = f"video {uid}: node {parent.node_id}"
    if abs(kids[0].start - parent.start) > SPAN_TOLERANCE or abs(kids[-1].end - parent.end) > SPAN_TOLERANCE:
        raise RecordError(
            f"{where}: children span [{kids[0].start}, {kids[-1].end}], parent [{parent.start}, {parent.end}]"
        )
    for left, right in zip(kids, kids[1:], strict=False):
        if abs(left.end - right.start) > SPAN_TOLERANCE:
            kind = "gap" if right.start > left.end else "overlap"
            raise RecordError(
                f"{where}: children do not tile: {kind} between {left.node_id} (ends {left.end}) "
                f"and {right.node_id} (starts {right.start})"
            )


# -- the official release layout ------------------------------------------------------------------


def from_official(row: dict[str, Any]) -> VideoRecord:
    """A release row {video_uid, metadata, nodes: [{..., plm_caption, plm_action, llama3_caption, gpt}]}."""
    if not isinstance(row, dict) or "video_uid" not in row or "nodes" not in row:
        raise RecordError("an official row must be an object with 'video_uid' and 'nodes'")
    uid = validate_video_uid(row["video_uid"])
    nodes = []
    for i, official in enumerate(row["nodes"]):
        where = f"video {uid}: node #{i}"
        _check_node_types(official, where)
        ours: dict[str, Any] = {}
        for key, value in official.items():
            if key in OFFICIAL_NODE_FIELDS:
                ours[OFFICIAL_NODE_FIELDS[key]] = value
            elif key in _NODE_FIELDS:
                raise RecordError(f"{where}: field '{key}' clashes with the project's own field names")
            else:
                ours[key] = value
        nodes.append(Node.from_dict(ours, where))
    return VideoRecord(
        video_uid=uid,
        metadata=dict(row.get("metadata") or {}),
        nodes=nodes,
        extra={k: v for k, v in row.items() if k not in ("video_uid", "metadata", "nodes")},
    )


def to_official(record: VideoRecord) -> dict[str, Any]:
    """The release row for `record` (our provenance has no place there and is left out)."""
    nodes = []
    for node in record.nodes:
        ours = node.to_dict()
        official = {key: ours[field_name] for key, field_name in OFFICIAL_NODE_FIELDS.items()}
        official.update(node.extra)
        nodes.append(official)
    return {"video_uid": record.video_uid, "metadata": record.metadata, "nodes": nodes, **record.extra}


def official_rows(data: Any) -> list[dict[str, Any]]:
    """Rows from any JSON layout of the release: column-oriented ({column: [values]}, as the sample
    file is), a list of rows, or one row."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("video_uid"), list):
        columns = list(data)
        lengths = {len(data[c]) for c in columns}
        if len(lengths) != 1:
            raise RecordError(f"column-oriented rows have columns of different lengths: {sorted(lengths)}")
        return [{c: data[c][i] for c in columns} for i in range(lengths.pop())]
    if isinstance(data, dict):
        return [data]
    raise RecordError(f"not an official Action100M layout: {type(data).__name__}")


def read_official_json(path: str | os.PathLike) -> list[VideoRecord]:
    """Records from a release JSON (any layout `official_rows` accepts) or JSON Lines file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"{path}: cannot read: {err}") from err
    records = []
    for row in official_rows(data):
        try:
            records.append(from_official(row))
        except RecordError as err:
            raise RecordError(f"{path}: {err}") from err
    return records


def official_columns(records: Iterable[VideoRecord]) -> dict[str, list[Any]]:
    """The column-oriented layout of the release sample, for writing records back in that form."""
    rows = [to_official(record) for record in records]
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for row in rows:
        for key, values in columns.items():
            values.append(row.get(key))
    return columns
