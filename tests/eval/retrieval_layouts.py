"""Miniature copies of the retrieval benchmarks' official files, with stand-in videos where each reader
looks for them: `write_miniature(name, root, videos)` returns the `BenchmarkConfig` options that read it.

Each miniature keeps the quirks the reader handles: MSVD lists a clip outside the split and repeats a
caption, ActivityNet Captions lists sentences out of time order with leading spaces, YouCook2 has a
training video, DiDeMo interleaves the annotations of its videos.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.eval.conftest import stand_in

# a config name (as in configs/zero_shot/) -> (reader, task)
MINIATURES = {
    "msrvtt": ("msrvtt", ""),
    "msvd": ("msvd", ""),
    "activitynet_captions": ("activitynet_captions", ""),
    "youcook2": ("youcook2", "clips"),
    "youcook2_segments": ("youcook2", "segments"),
    "didemo": ("didemo", ""),
    "dream1k": ("dream1k", ""),
}
# stand-in videos last 2 s (20 frames at 10 fps): spans stay inside them
SPANS = ((0, 1), (1, 2))


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _msrvtt(root: Path, videos: int) -> list[Path]:
    rows = [
        [f"ret{i}", f"msr{7000 + i}", f"video{7000 + i}", f"a person does thing {i}"] for i in range(videos)
    ]
    _csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"], rows)
    return [root / f"video{7000 + i}.mp4" for i in range(videos)]


def _msvd(root: Path, videos: int) -> list[Path]:
    clips = [f"clip{i:03d}xyzAB_{i}_{i + 5}" for i in range(videos)]
    captions = {
        clip: [f"a dog plays {i}", f"a dog plays {i}" if i == 0 else f"a puppy runs {i}"]
        for i, clip in enumerate(clips)
    }
    captions["notinsplit_0_4"] = ["a clip of another split"]
    (root / "test_list.txt").write_text("\n".join(clips))  # no final newline, as published
    (root / "captions_msvd.json").write_text(json.dumps(captions))
    return [root / f"{clip}.avi" for clip in clips]


def _activitynet(root: Path, videos: int) -> list[Path]:
    database = {
        f"v_anet{i:04d}xyz": {
            "duration": 2.0,
            "timestamps": [[1.0, 2.0], [0.0, 1.0]],
            "sentences": [f"Then the man jumps {i}.", f"  A man runs {i}."],
        }
        for i in range(videos)
    }
    (root / "val_1.json").write_text(json.dumps(database))
    return [root / f"{video}.mp4" for video in database]


def _youcook2(root: Path, videos: int) -> list[Path]:
    ids = [f"yc2vid{i:04d}x" for i in range(videos)]
    rows = [
        [end, start, 226, f"chop the onion {i} {k}", video]
        for i, video in enumerate(ids)
        for k, (start, end) in enumerate(SPANS)
    ]
    _csv(root / "validation_youcook.csv", ["end", "start", "task", "text", "video_id"], rows)
    database = {
        video: {
            "duration": 2.0,
            "subset": "validation",
            "recipe_type": "226",
            "annotations": [
                {"segment": list(span), "id": k, "sentence": f"chop the onion {i} {k}"}
                for k, span in enumerate(SPANS)
            ],
            "video_url": f"https://www.youtube.com/watch?v={video}",
        }
        for i, video in enumerate(ids)
    }
    database["trainvid000"] = {
        "duration": 2.0,
        "subset": "training",
        "recipe_type": "101",
        "annotations": [{"segment": [0, 1], "id": 0, "sentence": "a training step"}],
        "video_url": "https://www.youtube.com/watch?v=trainvid000",
    }
    (root / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": database}))
    return [root / f"{video}.mp4" for video in ids]


def _didemo(root: Path, videos: int) -> list[Path]:
    names = [f"{1000 + i}@N00_{i}_abc.mov" for i in range(videos)]
    entries = [
        {
            "annotation_id": k * videos + i,
            "description": f"the bird flies {i} {k}",
            "video": name,
            "times": [[k, k], [k, k + 1], [k, k], [k, k]],
            "download_link": f"https://www.flickr.com/video_download.gne?id={i}",
            "num_segments": 6,
        }
        for k in range(2)  # the annotations of one video are not adjacent
        for i, name in enumerate(names)
    ]
    (root / "test_data.json").write_text(json.dumps(entries))
    return [root / name for name in names]


def _dream1k(root: Path, videos: int) -> list[Path]:
    lines = []
    for vid in range(1, videos + 1):
        reference = f"A character walks across a room {vid}."
        lines.append(
            {
                "messages": [
                    {
                        "content": [
                            {
                                "reference": None,
                                "text": None,
                                "type": "video",
                                "video": {"video_file": "<placeholder>"},
                            },
                            {
                                "reference": None,
                                "text": "Describe the video in detail.",
                                "type": "text",
                                "video": None,
                            },
                        ],
                        "role": "user",
                    },
                    {
                        "content": [{"reference": reference, "text": "", "type": "text", "video": None}],
                        "role": "assistant",
                    },
                ],
                "dataset": "DREAM/youtube",
                "task": "video/caption",
                "idx": vid,
                "extra_info": {"duration": 2.0, "events": ["A character walks."], "n_events": 1},
                "vid": vid,
            }
        )
    (root / "DREAM-1k.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    return [root / f"{vid}.mp4" for vid in range(1, videos + 1)]


WRITERS = {
    "msrvtt": _msrvtt,
    "msvd": _msvd,
    "activitynet_captions": _activitynet,
    "youcook2": _youcook2,
    "youcook2_segments": _youcook2,
    "didemo": _didemo,
    "dream1k": _dream1k,
}


def write_miniature(name: str, root: Path, videos: int) -> dict[str, str]:
    """Write benchmark `name`'s official files at `root` in miniature: `videos` videos (2 captions each
    where the benchmark has several: MSVD, YouCook2's two clips or segments a video; ActivityNet
    Captions and DiDeMo join two sentences into one paragraph), and a stand-in video at every path the
    reader gives. Returns the options of a `BenchmarkConfig` reading it (name, reader, root, task)."""
    reader, task = MINIATURES[name]
    root.mkdir(parents=True, exist_ok=True)
    for path in WRITERS[name](root, videos):
        stand_in(path)
    return {"name": name, "reader": reader, "root": str(root), "task": task}
