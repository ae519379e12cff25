"""DREAM-1K text-video retrieval: 1,000 clips (5 sources x 200), one detailed reference caption each.

File (in root, or in `data/annotations/` under it, where the Tarsier repository keeps it):
`DREAM-1k.jsonl`, one JSON object a line. The caption is `messages[1].content[0].reference` (the
assistant turn); the older format of the same file (Tarsier's `tarsier` branch) has it at
`text.response`. The file's video path is a placeholder: videos map by `vid` (1-1000) to
`<videos>/<vid>.mp4` (`video_ext` changes the extension), read whole.
Protocol (retrieval, as VL-JEPA reports it): the 1,000 clips in file order, each with its reference
caption; t2v and v2t over the same 1,000 pairs. The key events (`extra_info.events`) are the captioning
benchmark's, not retrieval's: only their count is noted, as is the count of entries whose video was
replaced after the first release (`extra_info.old_video_file`; their duration may differ).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, field_of
from action100m.eval.errors import BenchmarkFileError

NAME = "dream1k"
SPLITS = ("test",)
FOLDERS = ("", "data/annotations")
PROTOCOL = {
    "name": "DREAM-1K reference captions",
    "unit": "clip",
    "captions": "one per video (the reference description)",
    "multi_caption": "none: one caption per video, so t2v and v2t rank the same 1,000 pairs",
}


def _reference(path: Path, entry: dict[str, Any], where: str) -> str:
    """The caption in either of the file's published formats."""
    if "messages" not in entry and "text" in entry:
        text = field_of(NAME, path, field_of(NAME, path, entry, "text", where), "response", f"{where} text")
    else:
        try:
            text = entry["messages"][1]["content"][0]["reference"]
        except (KeyError, IndexError, TypeError):
            raise BenchmarkFileError(NAME, path, f"{where} has no messages[1].content[0].reference") from None
    if not isinstance(text, str) or not text.strip():
        raise BenchmarkFileError(NAME, path, f"{where}: empty caption")
    return text.strip()


def read(source: Source) -> RetrievalSet:
    split = source.choice(NAME, "split", source.split, SPLITS)
    path = source.find(NAME, "annotations", ("DREAM-1k.jsonl",), FOLDERS)
    ext = source.video_ext or ".mp4"
    lines = path.read_text(encoding="utf-8").splitlines()
    line_of: dict[str, int] = {}
    clips, captions, events, replaced, sources = [], [], 0, 0, Counter()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise BenchmarkFileError(NAME, path, f"line {n} is not valid JSON: {err}") from None
        if not isinstance(entry, dict):
            raise BenchmarkFileError(NAME, path, f"line {n} is not an object")
        vid = str(field_of(NAME, path, entry, "vid", f"line {n}"))
        where = f"line {n} (vid {vid})"
        if vid in line_of:
            raise BenchmarkFileError(NAME, path, f"{where}: vid already on line {line_of[vid]}")
        line_of[vid] = n
        captions.append(_reference(path, entry, where))
        clips.append(Clip(vid, source.videos / f"{vid}{ext}", len(clips)))
        extra = entry.get("extra_info") or {}
        events += len(extra.get("events") or ())
        replaced += "old_video_file" in extra
        sources[str(entry.get("dataset", "?"))] += 1
    if not clips:
        raise BenchmarkFileError(NAME, path, "no entries")
    notes = {
        "key_events": events,
        "replaced_videos": replaced,
        "sources": dict(sorted(sources.items())),
    }
    return RetrievalSet(NAME, split, clips, captions, list(range(len(clips))), [path], notes, dict(PROTOCOL))
