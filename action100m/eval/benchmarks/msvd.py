"""MSVD (YouTube2Text) text-video retrieval, every caption of every test clip.

Files (in root), as X-Pool publishes them: the split's list, `test_list.txt` (split test, default: 670
clips) or `val_list.txt` (split val: 100), one clip name `<youtube_id>_<start>_<end>` a line; and
`captions_msvd.json`, {clip name: [caption, ...]} (lower-cased, punctuation removed). Videos:
`<videos>/<clip>.avi`, the trimmed clips of YouTubeClips.tar (`video_ext` changes the extension), read
whole.
Protocol (as CLIP4Clip, X-Pool and the papers score it): every caption of a clip is a text-to-video
query (21-81 per test clip, 27,763 in all); video-to-text finds a clip at the rank of its best-ranked
caption. Exact duplicate captions within a clip (3,730 on the test split) are kept, as the papers keep
them: each is its own query.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import Clip, RetrievalSet, Source, field_of, read_json, read_lines
from action100m.eval.errors import BenchmarkFileError

NAME = "msvd"
SPLITS = ("test", "val")
PROTOCOL_NAMES = {"test": "670-clip test split", "val": "100-clip validation split"}


def read(source: Source) -> RetrievalSet:
    split = source.choice(NAME, "split", source.split, SPLITS)
    list_path = source.find(NAME, "clips", (f"{split}_list.txt",))
    path = source.find(NAME, "captions", ("captions_msvd.json",))
    names = read_lines(list_path)
    if not names:
        raise BenchmarkFileError(NAME, list_path, "lists no clip")
    by_clip = read_json(NAME, path)
    if not isinstance(by_clip, dict):
        raise BenchmarkFileError(NAME, path, "expected an object {clip: [caption, ...]}")
    ext = source.video_ext or ".avi"
    entry_of: dict[str, int] = {}
    clips, captions, caption_video, duplicates = [], [], [], 0
    for k, name in enumerate(names):
        if name in entry_of:
            raise BenchmarkFileError(
                NAME, list_path, f"clip {name} is entries {entry_of[name] + 1} and {k + 1}"
            )
        entry_of[name] = k
        texts = field_of(
            NAME, path, by_clip, name, f"the caption map (for entry {k + 1} of {list_path.name})"
        )
        if not isinstance(texts, list) or not texts:
            raise BenchmarkFileError(NAME, path, f"clip {name}: expected a non-empty list of captions")
        texts = [t.strip() if isinstance(t, str) else "" for t in texts]
        if "" in texts:
            raise BenchmarkFileError(
                NAME, path, f"clip {name}: caption {texts.index('')} is empty or not text"
            )
        duplicates += len(texts) - len(set(texts))
        clips.append(Clip(name, source.videos / f"{name}{ext}", k))
        captions += texts
        caption_video += [k] * len(texts)
    notes = {"duplicate_captions": duplicates}  # repeats of a caption the same clip already has, kept
    protocol = {
        "name": PROTOCOL_NAMES[split],
        "unit": "clip",
        "captions": "every caption of a clip, exact duplicates kept",
        "multi_caption": "t2v: every caption is a query; v2t: a video is found at the rank of its "
        "best-ranked caption",
    }
    return RetrievalSet(NAME, split, clips, captions, caption_video, [list_path, path], notes, protocol)
