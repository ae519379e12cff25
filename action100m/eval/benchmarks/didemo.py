"""DiDeMo paragraph-to-video retrieval (split test, default | val), from the LocalizingMoments release.

File (in root, or in `data/` under it, as github.com/LisaAnne/LocalizingMoments keeps it):
`{split}_data.json`, a list of annotations {annotation_id, description, video, times: [[start, end] in
5-second segments, one pair per annotator], download_link, num_segments}. Videos: `<videos>/<video>`,
the `video` field as the file names it (`10015567@N08_3655084291_d8b58466fa.mov`), its extension
replaced by `video_ext` when given (the released videos are often converted to .mp4), read whole.
Optional list (`zero_shot.files.videos=PATH`, one video a line, the `video` field or that name without
its extension): only the listed videos, in the list's order. This is how the papers' 1,004-video test
protocol is read; without a list every video of the JSON is used, in order of first appearance.
Protocol (the papers' paragraph retrieval, after CLIP4Clip): a video's descriptions, stripped, joined
with one space in the file's order, form one caption; the clip is the whole video. `times` are not used:
they are moment localisation's (six 5-second segments, the first 30 s of a video).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, field_of, read_json, read_lines
from action100m.eval.errors import BenchmarkFileError

NAME = "didemo"
SPLITS = ("test", "val")
FOLDERS = ("", "data")
PROTOCOL = {
    "name": "paragraph-to-video",
    "unit": "paragraph",
    "captions": "a video's descriptions joined in file order (one per video), the whole video as the clip",
    "multi_caption": "none: one paragraph per video, so t2v and v2t rank the same pairs",
}


def _listed(source: Source, paragraphs: dict[str, list[str]]) -> tuple[list[str], Path]:
    """The videos of the list file, in its order, as the JSON names them."""
    path = source.find(NAME, "videos", (source.files["videos"],), FOLDERS)
    stems: dict[str, list[str]] = {}
    for video in paragraphs:
        stems.setdefault(Path(video).stem, []).append(video)
    chosen: list[str] = []
    entry_of: dict[str, int] = {}
    for n, name in enumerate(read_lines(path), start=1):
        matches = [name] if name in paragraphs else stems.get(name, [])
        if len(matches) != 1:
            reason = "names no video of the annotations" if not matches else f"matches {', '.join(matches)}"
            raise BenchmarkFileError(NAME, path, f"entry {n}: {name!r} {reason}")
        (video,) = matches
        if video in entry_of:
            raise BenchmarkFileError(NAME, path, f"entry {n}: {name!r} is entry {entry_of[video]} too")
        entry_of[video] = n
        chosen.append(video)
    if not chosen:
        raise BenchmarkFileError(NAME, path, "lists no video")
    return chosen, path


def _where(k: int, entry: Any) -> str:
    named = isinstance(entry, dict) and "annotation_id" in entry
    return f"entry {k}" + (f" (annotation_id {entry['annotation_id']})" if named else "")


def read(source: Source) -> RetrievalSet:
    split = source.choice(NAME, "split", source.split, SPLITS)
    path = source.find(NAME, "annotations", (f"{split}_data.json",), FOLDERS)
    entries = read_json(NAME, path)
    if not isinstance(entries, list) or not entries:
        raise BenchmarkFileError(
            NAME, path, "expected a non-empty list of {annotation_id, description, video}"
        )
    paragraphs: dict[str, list[str]] = {}
    for k, entry in enumerate(entries):
        where = _where(k, entry)
        video = field_of(NAME, path, entry, "video", where)
        description = field_of(NAME, path, entry, "description", where)
        if not isinstance(video, str) or not video.strip():
            raise BenchmarkFileError(NAME, path, f"{where}: empty video")
        if not isinstance(description, str) or not description.strip():
            raise BenchmarkFileError(NAME, path, f"{where}: empty description")
        paragraphs.setdefault(video.strip(), []).append(description.strip())
    files = [path]
    if "videos" in source.files:
        videos, list_path = _listed(source, paragraphs)
        files.append(list_path)
        video_list = f"{list_path.name}: {len(videos)} of the {len(paragraphs)} annotated videos"
    else:
        videos = list(paragraphs)
        video_list = f"none: every annotated video ({len(videos)})"
    clips, captions = [], []
    for video in videos:
        file = Path(video)
        if source.video_ext:
            file = file.with_name(file.stem + source.video_ext)
        clips.append(Clip(video, source.videos / file, len(clips)))
        captions.append(" ".join(paragraphs[video]))
    notes = {
        "descriptions": sum(len(paragraphs[v]) for v in videos),
        "video_list": video_list,
    }
    return RetrievalSet(NAME, split, clips, captions, list(range(len(clips))), files, notes, dict(PROTOCOL))
