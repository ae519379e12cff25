"""Ego4D Goal-Step: the goal -> step -> substep hierarchy of `goalstep_{split}.json` (split valid | train).

The file is looked for in root and in the folders the releases put it in under root: the Ego4D CLI's
`v2/annotations/` (named `goalstep_val.json` there) and the ego4d-goalstep repository's `data/`
(`goalstep_valid.json`), so root may be either folder, the CLI's output folder or the clone's parent.

Each video {video_uid, start_time, end_time, goal_category, segments: [steps]}; each step {start_time,
end_time, step_category, segments: [substeps]}. Tasks: `step` (default) classifies the step segments by
step_category, `substep` the substeps, `goal` the goal span of each video by goal_category. The file has
no separate taxonomy, so the classes are the sorted distinct categories of the file read (val: 355
steps, 43 goals). Class text: step categories without their group ("Make baked goods: Knead the dough"
-> "knead the dough"), goals in words ("COOKING:MAKE_BREAD" -> "make bread").
Videos: `<videos>/full_scale/<video_uid>.mp4`, spans in seconds of the full video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, field_of, read_json
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "ego4d_goalstep"
TASKS = ("step", "substep", "goal")
SPLITS = ("valid", "train")
VIDEO_DIR = "full_scale"
FOLDERS = ("", "annotations", "v2/annotations", "data", "ego4d-goalstep/data")
NAMES = {"valid": ("goalstep_valid.json", "goalstep_val.json"), "train": ("goalstep_train.json",)}


def category_text(category: str) -> str:
    """The part after the group: "Make baked goods: Knead the dough" -> "Knead the dough"."""
    return category.split(":", 1)[1].strip() if ":" in category else category


def goal_text(category: str) -> str:
    return category.rsplit(":", 1)[-1].replace("_", " ").lower()


def _segments(path: Path, videos: list[dict[str, Any]], task: str) -> list[tuple[str, str, dict]]:
    """(video_uid, segment id, segment) for the task's level of the hierarchy."""
    out = []
    for v, video in enumerate(videos):
        uid = str(field_of(NAME, path, video, "video_uid", f"video {v}"))
        if task == "goal":
            out.append((uid, uid, video))
            continue
        for s, step in enumerate(field_of(NAME, path, video, "segments", f"video {uid}")):
            if task == "step":
                out.append((uid, f"{uid}_{s}", step))
                continue
            for u, substep in enumerate(field_of(NAME, path, step, "segments", f"video {uid} step {s}")):
                out.append((uid, f"{uid}_{s}_{u}", substep))
    return out


def read(source: Source) -> Benchmark:
    task = source.choice(NAME, "task", source.task, TASKS)
    split = source.choice(NAME, "split", source.split, SPLITS)
    path = source.find(NAME, "annotations", NAMES[split], FOLDERS)
    data = read_json(NAME, path)
    videos = field_of(NAME, path, data, "videos", "the file")
    key = "goal_category" if task == "goal" else "step_category"
    segments = _segments(path, videos, task)
    categories = [str(field_of(NAME, path, seg, key, f"segment {sid}")) for _, sid, seg in segments]
    class_names = sorted(set(categories))
    lookup = {name: i for i, name in enumerate(class_names)}
    ext = source.video_ext or ".mp4"
    clips = []
    for (uid, sid, seg), category in zip(segments, categories, strict=True):
        start, end = field_of(NAME, path, seg, "start_time", sid), field_of(NAME, path, seg, "end_time", sid)
        if not float(end) > float(start):
            raise BenchmarkFileError(NAME, path, f"segment {sid}: end {end} not after start {start}")
        video = source.videos / VIDEO_DIR / f"{uid}{ext}"
        clips.append(Clip(sid, video, lookup[category], float(start), float(end)))
    to_text = goal_text if task == "goal" else category_text
    texts = [normalise_class_name(to_text(name)) for name in class_names]
    return Benchmark(NAME, split, task, class_names, texts, clips, [path])
