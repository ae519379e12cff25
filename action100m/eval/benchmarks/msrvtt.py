"""MSR-VTT text-video retrieval, the 1k-A test split (JSFusion's 1,000 test videos, one caption each).

File (in root, or in `msrvtt_data/` under it, as CLIP4Clip's archive unpacks): `MSRVTT_JSFUSION_test.csv`,
header `key,vid_key,video_id,sentence`, one row per video. Videos: `<videos>/<video_id>.mp4`
(`video_ext` changes the extension), read whole.
Protocol (1k-A, as CLIP4Clip and the papers after it score it): the 1,000 videos in the CSV's row order,
each with its one sentence; text-to-video ranks the 1,000 videos, video-to-text the 1,000 sentences.
Five sentences describe two videos each (the CSV has 995 distinct sentences); each still counts only for
its own row's video.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, read_csv
from action100m.eval.errors import BenchmarkFileError

NAME = "msrvtt"
SPLITS = ("test",)
FOLDERS = ("", "msrvtt_data")
COLUMNS = ("video_id", "sentence")
PROTOCOL = {
    "name": "1k-A",
    "unit": "clip",
    "captions": "one per video (JSFusion's sentence)",
    "multi_caption": "none: one caption per video, so t2v and v2t rank the same 1,000 pairs",
}


def read(source: Source) -> RetrievalSet:
    split = source.choice(NAME, "split", source.split, SPLITS)
    path = source.find(NAME, "annotations", ("MSRVTT_JSFUSION_test.csv",), FOLDERS)
    rows = read_csv(NAME, path, COLUMNS)
    if not rows:
        raise BenchmarkFileError(NAME, path, "no rows")
    ext = source.video_ext or ".mp4"
    seen: dict[str, int] = {}
    clips, captions = [], []
    for k, row in enumerate(rows):
        video_id, sentence = (row["video_id"] or "").strip(), (row["sentence"] or "").strip()
        # row k is line k + 2 of the file (after the header)
        if not video_id or not sentence:
            raise BenchmarkFileError(NAME, path, f"line {k + 2}: empty video_id or sentence")
        if video_id in seen:
            raise BenchmarkFileError(
                NAME,
                path,
                f"line {k + 2}: video {video_id} already on line {seen[video_id] + 2} (1k-A: one row a video)",
            )
        seen[video_id] = k
        clips.append(Clip(video_id, source.videos / f"{video_id}{ext}", k))
        captions.append(sentence)
    # sentences another video also has (the header of check_only already counts videos and captions)
    notes = {"repeated_captions": len(captions) - len(set(captions))}
    return RetrievalSet(NAME, split, clips, captions, list(range(len(clips))), [path], notes, dict(PROTOCOL))
