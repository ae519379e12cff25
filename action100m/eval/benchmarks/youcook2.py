"""YouCook2 text-to-clip retrieval: MIL-NCE's 3,350 validation clips (task clips, default) or every
annotated validation segment (task segments).

Files (in root): task clips: `validation_youcook.csv` from MIL-NCE_HowTo100M's csv/ (header
`end,start,task,text,video_id`), one row per clip: [start, end] in whole seconds of YouTube video
`video_id`, its step sentence `text`, and `task`, the recipe type (e.g. 226: the annotations'
`recipe_type`, the folder of the official raw_videos layout; no path is given). 3,350 rows from 436 of
the 457 validation videos. Task segments: `youcookii_annotations_trainval.json` ({"database": {youtube id:
{subset, recipe_type, annotations: [{id, segment: [start, end], sentence}]}}}), every annotation of the
`validation` subset: 3,492 segments of 457 videos.
Videos (`layout`): `flat` (default) `<videos>/<youtube id>.mp4`; `by_recipe`
`<videos>/validation/<recipe type>/<youtube id>.mp4`, the official raw_videos layout, which MIL-NCE's
loader reads (recipe type from the CSV's `task` column or the annotation's `recipe_type`). `video_ext`
changes the extension (the downloads mix .mp4, .mkv and .webm, which MIL-NCE tries in turn; a reader
does not look at the disk, so convert or link them to one).
Protocol: each row (segment) is one clip of its video with one caption, t2v and v2t over those pairs,
as MIL-NCE scores the CSV. Two CSV rows (oJZUxU9szWA, 120-252 s: two annotated steps with one segment)
share a span, hence the same frames; each clip is found only by its own row's caption. Clip ids:
`<youtube id>_<row>` (the CSV's row, from 0) or `<youtube id>_<annotation id>`. Three sentences begin
with a space, stripped here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, field_of, read_csv, read_json
from action100m.eval.errors import BenchmarkFileError

NAME = "youcook2"
TASKS = ("clips", "segments")
SPLITS = ("validation",)
LAYOUTS = ("flat", "by_recipe")
COLUMNS = ("video_id", "start", "end", "text", "task")
PROTOCOLS = {
    "clips": {
        "name": "MIL-NCE validation clips",
        "unit": "clip",
        "captions": "one per clip (the step's sentence)",
        "multi_caption": "none: one caption per clip, so t2v and v2t rank the same pairs",
    },
    "segments": {
        "name": "every validation segment",
        "unit": "segment",
        "captions": "one per segment (its annotated sentence)",
        "multi_caption": "none: one caption per segment, so t2v and v2t rank the same pairs",
    },
}


class _Clips:
    """The clips and captions read so far, each span and sentence checked as it is added."""

    def __init__(self, source: Source, layout: str, path: Path):
        self.source, self.layout, self.path = source, layout, path
        self.ext = source.video_ext or ".mp4"
        self.clips: list[Clip] = []
        self.captions: list[str] = []

    def add(self, clip_id: str, video: str, recipe: str, start: Any, end: Any, text: Any, where: str) -> None:
        try:
            begin, finish = float(start), float(end)
        except (TypeError, ValueError):
            raise BenchmarkFileError(
                NAME, self.path, f"{where}: span {start!r}-{end!r} is not numbers"
            ) from None
        if not 0 <= begin < finish:
            raise BenchmarkFileError(
                NAME, self.path, f"{where}: empty or negative span {begin:g}-{finish:g} s"
            )
        if not isinstance(text, str) or not text.strip():
            raise BenchmarkFileError(NAME, self.path, f"{where}: empty sentence")
        folder = (
            self.source.videos / "validation" / recipe if self.layout == "by_recipe" else self.source.videos
        )
        self.clips.append(Clip(clip_id, folder / f"{video}{self.ext}", len(self.clips), begin, finish))
        self.captions.append(text.strip())


def _from_csv(source: Source, layout: str) -> tuple[_Clips, Path]:
    path = source.find(NAME, "clips", ("validation_youcook.csv",))
    rows = read_csv(NAME, path, COLUMNS)
    found = _Clips(source, layout, path)
    for k, row in enumerate(rows):
        video = (row["video_id"] or "").strip()
        where = f"line {k + 2} (video {video})"  # after the header
        if not video or not (row["task"] or "").strip():
            raise BenchmarkFileError(NAME, path, f"{where}: empty video_id or task")
        # the row names the clip: two rows share a video and span
        found.add(f"{video}_{k}", video, row["task"].strip(), row["start"], row["end"], row["text"], where)
    return found, path


def _from_annotations(source: Source, layout: str) -> tuple[_Clips, Path]:
    path = source.find(NAME, "annotations", ("youcookii_annotations_trainval.json",))
    database = field_of(NAME, path, read_json(NAME, path), "database", "the file")
    if not isinstance(database, dict):
        raise BenchmarkFileError(NAME, path, "expected database: {youtube id: {subset, annotations}}")
    found = _Clips(source, layout, path)
    for video, entry in database.items():
        if field_of(NAME, path, entry, "subset", f"video {video}") != "validation":
            continue
        recipe = str(field_of(NAME, path, entry, "recipe_type", f"video {video}"))
        for k, segment in enumerate(field_of(NAME, path, entry, "annotations", f"video {video}")):
            where = f"video {video} annotation {k}"
            span = field_of(NAME, path, segment, "segment", where)
            if not isinstance(span, list) or len(span) != 2:
                raise BenchmarkFileError(NAME, path, f"{where}: segment {span!r} is not [start, end]")
            segment_id = field_of(NAME, path, segment, "id", where)
            sentence = field_of(NAME, path, segment, "sentence", where)
            found.add(f"{video}_{segment_id}", video, recipe, span[0], span[1], sentence, where)
    return found, path


def read(source: Source) -> RetrievalSet:
    task = source.choice(NAME, "task", source.task, TASKS)
    split = source.choice(NAME, "split", source.split, SPLITS)
    layout = source.choice(NAME, "layout", source.layout, LAYOUTS)
    found, path = (_from_csv if task == "clips" else _from_annotations)(source, layout)
    clips, captions = found.clips, found.captions
    if not clips:
        raise BenchmarkFileError(NAME, path, f"no {task} in the validation split")
    spans = [(c.video, c.start, c.end) for c in clips]
    notes = {
        "video_files": len({c.video for c in clips}),
        "shared_spans": len(spans) - len(set(spans)),  # clips whose video and span an earlier clip has
    }
    return RetrievalSet(
        NAME, split, clips, captions, list(range(len(clips))), [path], notes, dict(PROTOCOLS[task])
    )
