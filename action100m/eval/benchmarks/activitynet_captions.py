"""ActivityNet Captions paragraph-to-video retrieval on val_1 (split val_1, default) or val_2.

File (in root): `val_1.json` (4,917 videos, 17,505 sentences) or `val_2.json` (4,885 of those videos,
annotated by others), as released with the dataset: {video id: {duration, timestamps: [[start, end],
...], sentences: [...]}}. Videos: `<videos>/<id>.mp4`, the id as in the file ("v_" + YouTube id;
`video_ext` changes the extension), read whole.
Protocol (the papers' paragraph retrieval): one caption per video, its sentences stripped (most after the
first begin with spaces), put in time order (by start; equal starts keep the file's order) and joined
with one space; the clip is the whole video. 131 val_1 videos list their sentences out of time order.
The timestamps only order the sentences: those past the duration (5 in val_1, each ending 0.01 s after
it) or with start > end are listed in the notes, not corrected.
"""

from __future__ import annotations

from numbers import Real

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, field_of, read_json
from action100m.eval.errors import BenchmarkFileError

NAME = "activitynet_captions"
SPLITS = ("val_1", "val_2")
# durations and ends are two-decimal figures; differences below this are float noise (95.04 vs 95.0399...)
TOLERANCE = 1e-6
PROTOCOL = {
    "name": "paragraph-to-video",
    "unit": "paragraph",
    "captions": "a video's sentences joined in time order (one per video), the whole video as the clip",
    "multi_caption": "none: one paragraph per video, so t2v and v2t rank the same pairs",
}


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def read(source: Source) -> RetrievalSet:
    split = source.choice(NAME, "split", source.split, SPLITS)
    path = source.find(NAME, "annotations", (f"{split}.json",))
    database = read_json(NAME, path)
    if not isinstance(database, dict) or not database:
        raise BenchmarkFileError(
            NAME, path, "expected an object {video id: {duration, timestamps, sentences}}"
        )
    ext = source.video_ext or ".mp4"
    clips, captions, bad, reordered, sentence_count = [], [], [], 0, 0
    for video_id, entry in database.items():
        where = f"video {video_id}"
        duration = field_of(NAME, path, entry, "duration", where)
        sentences = field_of(NAME, path, entry, "sentences", where)
        stamps = field_of(NAME, path, entry, "timestamps", where)
        if not isinstance(sentences, list) or not sentences or not isinstance(stamps, list):
            raise BenchmarkFileError(NAME, path, f"{where}: expected lists of sentences and timestamps")
        if len(stamps) != len(sentences):
            raise BenchmarkFileError(
                NAME, path, f"{where}: {len(sentences)} sentences but {len(stamps)} timestamps"
            )
        if not _number(duration):
            raise BenchmarkFileError(NAME, path, f"{where}: duration {duration!r} is not a number")
        for i, (sentence, stamp) in enumerate(zip(sentences, stamps, strict=True)):
            if not isinstance(sentence, str) or not sentence.strip():
                raise BenchmarkFileError(NAME, path, f"{where}: sentence {i} is empty or not text")
            if not (isinstance(stamp, list) and len(stamp) == 2 and all(map(_number, stamp))):
                raise BenchmarkFileError(NAME, path, f"{where}: timestamp {i} is {stamp!r}, not [start, end]")
            start, end = stamp
            if start > end or start < 0 or end > duration + TOLERANCE:
                bad.append(f"{video_id} sentence {i}: [{start:g}, {end:g}] s of {duration:g} s")
        order = sorted(range(len(sentences)), key=lambda i: stamps[i][0])
        reordered += order != list(range(len(sentences)))
        sentence_count += len(sentences)
        captions.append(" ".join(sentences[i].strip() for i in order))
        clips.append(Clip(video_id, source.videos / f"{video_id}{ext}", len(clips)))
    notes = {
        "sentences": sentence_count,
        "paragraphs_reordered": reordered,  # videos whose sentences the file lists out of time order
        "bad_timestamps": bad,
    }
    return RetrievalSet(NAME, split, clips, captions, list(range(len(clips))), [path], notes, dict(PROTOCOL))
