"""Caption datasets for text-to-video and video-to-text retrieval, given as {video, caption} lists.

File (in root): `captions.json` (a JSON list) or `captions.jsonl` (one object a line; either name, or
another via `zero_shot.files.captions=NAME`); each item {"video": path relative to the videos folder,
"caption": text} with optional "start"/"end" seconds. Items naming the same video and span share one
video; a video may have several captions (MSR-VTT has 20).
"""

from __future__ import annotations

import json

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, field_of, read_json
from action100m.eval.errors import BenchmarkFileError

NAME = "captions"


def read(source: Source) -> RetrievalSet:
    path = source.find(NAME, "captions", ("captions.json", "captions.jsonl"))
    if path.suffix == ".jsonl":
        try:
            items = [
                json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        except json.JSONDecodeError as err:
            raise BenchmarkFileError(NAME, path, f"not valid JSON lines: {err}") from err
    else:
        items = read_json(NAME, path)
    if not isinstance(items, list) or not items:
        raise BenchmarkFileError(NAME, path, "expected a non-empty list of {video, caption}")
    videos: dict[tuple, int] = {}
    clips, captions, caption_video = [], [], []
    for k, item in enumerate(items):
        video = str(field_of(NAME, path, item, "video", f"item {k}"))
        caption = str(field_of(NAME, path, item, "caption", f"item {k}"))
        key = (video, float(item.get("start", 0.0)), item.get("end"))
        if key not in videos:
            videos[key] = len(clips)
            end = None if key[2] is None else float(key[2])
            clips.append(Clip(f"{video}@{key[1]:g}", source.videos / video, len(clips), key[1], end))
        captions.append(caption)
        caption_video.append(videos[key])
    return RetrievalSet(NAME, source.split, clips, captions, caption_video, [path])
