"""What every reader returns (clips + class names), and the file helpers readers share.

A reader turns a benchmark's official annotation files, as published, into `Clip`s (video path, span,
label id) and class names. It never looks at the videos: whether they exist is checked by the caller, so
`check_only` can count missing videos without decoding anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from action100m.eval.errors import BenchmarkFileError, EvalError


@dataclass(frozen=True)
class Clip:
    """One evaluated sample: seconds [start, end] of `video` (end None: to the end of the video)."""

    id: str
    video: Path
    label: int
    start: float = 0.0
    end: float | None = None


@dataclass
class Benchmark:
    """A closed-set classification benchmark. `class_names` are the published strings; `class_texts`
    their readable form, which templates turn into prompts."""

    name: str
    split: str
    task: str
    class_names: list[str]
    class_texts: list[str]
    clips: list[Clip]
    files: list[Path]
    notes: dict[str, Any] = field(default_factory=dict)  # facts worth reporting, e.g. unannotated videos

    def __post_init__(self) -> None:
        if not self.class_names:
            raise EvalError(f"{self.name}: empty class list (read from {', '.join(map(str, self.files))})")
        if len(self.class_texts) != len(self.class_names):
            raise EvalError(
                f"{self.name}: {len(self.class_texts)} class texts for {len(self.class_names)} classes"
            )
        bad = next((c for c in self.clips if not 0 <= c.label < len(self.class_names)), None)
        if bad is not None:
            raise EvalError(
                f"{self.name}: clip {bad.id} has label {bad.label} outside 0..{len(self.class_names) - 1}"
            )


@dataclass
class RetrievalSet:
    """Captioned videos: caption k describes `videos[caption_video[k]]` (a video may have several).

    `protocol` says how the papers score it, recorded in the result JSON: e.g. {"name": "1k-A",
    "unit": "clip" | "paragraph" | "segment", "captions": "one per video" | "all captions of a video",
    "multi_caption": how a video with several captions counts as found}."""

    name: str
    split: str
    videos: list[Clip]
    captions: list[str]
    caption_video: list[int]
    files: list[Path]
    notes: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_video):
            raise EvalError(
                f"{self.name}: {len(self.captions)} captions for {len(self.caption_video)} video ids"
            )
        bad = next((v for v in self.caption_video if not 0 <= v < len(self.videos)), None)
        if bad is not None:
            raise EvalError(f"{self.name}: a caption names video {bad} outside 0..{len(self.videos) - 1}")

    def captions_of(self, videos: Sequence[int]) -> tuple[list[str], list[int]]:
        """The captions of `videos` (indices into `self.videos`) in caption order, each with the row of its
        video in `videos`: what retrieval scores when only those videos are embedded."""
        row = {video: r for r, video in enumerate(videos)}
        kept = [(text, row[v]) for text, v in zip(self.captions, self.caption_video, strict=True) if v in row]
        return [text for text, _ in kept], [r for _, r in kept]


@dataclass(frozen=True)
class Source:
    """Where a benchmark lives and which variant to read. `files` renames a reader's files by role
    (relative to `root` or its archive folders, or absolute); `layout` and `video_ext` pick among the
    published video layouts."""

    root: Path
    videos: Path
    split: str
    task: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    layout: str = ""
    video_ext: str = ""
    class_names: str = ""

    def find(
        self,
        benchmark: str,
        role: str,
        names: Sequence[str],
        folders: Sequence[str] = ("",),
        holds: str = "",
    ) -> Path:
        """The one existing path `root/<folder>/<name>` playing `role`. `folders` are where a reader's
        official archives put the files, so `root` may be the files' own folder or one above it;
        `zero_shot.files.<role>` replaces `names`. With `holds` the path is a folder holding a file that
        matches that glob (HMDB51's per-class lists). Two hits are an error, not a guess: they may be
        different releases. When none exists, the error lists every path looked for."""
        if role in self.files:
            names = [self.files[role]]
        # an absolute override gives the same path under every folder: list it once
        candidates = list(dict.fromkeys(self.root / folder / name for folder in folders for name in names))
        if holds:
            found = [p for p in candidates if p.is_dir() and any(p.glob(holds))]
        else:
            found = [p for p in candidates if p.is_file()]
        # one file reached through two paths (a linked folder) is one candidate, not an ambiguity
        found = list({p.resolve(): p for p in found}.values())
        if len(found) == 1:
            return found[0]
        kind, override = "folder" if holds else "file", f"zero_shot.files.{role}=PATH"
        if found:
            raise BenchmarkFileError(
                benchmark,
                self.root,
                f"{len(found)} candidate {role} {kind}s: {', '.join(map(str, found))}; "
                f"point zero_shot.root at the folder of one, or set {override}",
            )
        looked = ", ".join(str(p / holds) if holds else str(p) for p in candidates)
        raise BenchmarkFileError(
            benchmark,
            self.root,
            f"no {role} {kind}; looked for {looked} (set zero_shot.root to the folder holding it or "
            f"the one its archive unpacks to, or {override})",
        )

    def choice(self, benchmark: str, what: str, value: str, allowed: tuple[str, ...]) -> str:
        """`value` (the reader's first option when empty), checked against `allowed`."""
        value = value or allowed[0]
        if value not in allowed:
            raise EvalError(f"{benchmark}: unknown {what} {value!r}; choose one of {list(allowed)}")
        return value


def read_json(benchmark: str, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchmarkFileError(benchmark, path, f"not valid JSON: {err}") from err


def read_csv(benchmark: str, path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV with a header (quoted fields, CRLF and a BOM allowed); `required` columns must exist."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkFileError(
                benchmark, path, f"no column {missing[0]!r} (header: {reader.fieldnames})"
            )
        return list(reader)


def read_lines(path: Path) -> list[str]:
    """Non-blank lines without CRLF or trailing spaces (UCF101 and HMDB51 split files have both)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def field_of(benchmark: str, path: Path, entry: Mapping[str, Any], key: str, where: str) -> Any:
    """entry[key], or an error naming the file, the entry and the key."""
    try:
        return entry[key]
    except (KeyError, TypeError):
        raise BenchmarkFileError(benchmark, path, f"{where} has no {key!r}") from None


def class_list(benchmark: str, path: Path, names: list[str]) -> list[str]:
    """`names`, or an error naming the file when it lists no class."""
    if not names:
        raise BenchmarkFileError(benchmark, path, "empty class list")
    return names


def class_index(benchmark: str, path: Path, lookup: Mapping[str, int], name: str, where: str) -> int:
    """The id of class `name`, or an error naming the unknown label and where it was found."""
    try:
        return lookup[name]
    except KeyError:
        raise BenchmarkFileError(benchmark, path, f"{where}: unknown label {name!r}") from None
