"""The text-video retrieval readers (MSR-VTT, MSVD, ActivityNet Captions, YouCook2, DREAM-1K) on the
official files in ../shared/benchmarks/retrieval: counts, first items against the raw files, protocols
and what check_only prints; DiDeMo on files written in LocalizingMoments' layout; every reader on the
miniatures of tests/eval/retrieval_layouts.py, and its errors on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from action100m.eval.benchmarks import READERS, RetrievalSet, read_benchmark
from action100m.eval.config import BenchmarkConfig, register_eval_configs
from action100m.eval.errors import BenchmarkFileError, EvalError
from action100m.eval.run import load_benchmark, run_eval
from tests.eval.conftest import source
from tests.eval.retrieval_layouts import MINIATURES, write_miniature

RETRIEVAL = ("msrvtt", "msvd", "activitynet_captions", "youcook2", "didemo", "dream1k")


@pytest.fixture
def shared(shared_dir: Path):
    """The shared folder of one retrieval benchmark (readers only read it)."""
    return lambda name: shared_dir / "benchmarks" / "retrieval" / name


def read(root: Path, reader: str, **options: str) -> RetrievalSet:
    data = read_benchmark(reader, source(root, **options))
    assert isinstance(data, RetrievalSet)
    return data


def assert_protocol(data: RetrievalSet, unit: str) -> None:
    assert set(data.protocol) == {"name", "unit", "captions", "multi_caption"}
    assert data.protocol["unit"] == unit and all(isinstance(v, str) and v for v in data.protocol.values())


def test_every_retrieval_reader_is_registered():
    assert set(RETRIEVAL) <= set(READERS)


def test_msrvtt_1k_a_in_row_order(shared):
    root = shared("msrvtt")
    data = read(root, "msrvtt")
    rows = list(csv.DictReader(open(root / "MSRVTT_JSFUSION_test.csv", encoding="utf-8")))
    assert (len(data.videos), len(data.captions), data.split) == (1_000, 1_000, "test")
    assert data.caption_video == list(range(1_000))
    first = data.videos[0]
    assert (first.id, first.video.name, data.captions[0], first.start, first.end) == (
        rows[0]["video_id"],
        f"{rows[0]['video_id']}.mp4",
        rows[0]["sentence"],
        0.0,
        None,
    )
    assert [v.id for v in data.videos] == [r["video_id"] for r in rows]  # not the sorted val list's order
    assert data.notes["repeated_captions"] == 5
    assert_protocol(data, "clip")
    assert data.protocol["name"] == "1k-A"
    assert read(root, "msrvtt", video_ext=".avi").videos[0].video.name == "video9770.avi"


def test_msvd_every_caption_duplicates_kept(shared):
    root = shared("msvd")
    data = read(root, "msvd")
    captions = json.loads((root / "captions_msvd.json").read_text())
    first_clip = (root / "test_list.txt").read_text().split()[0]
    assert (len(data.videos), len(data.captions), data.split) == (670, 27_763, "test")
    first = data.videos[0]
    assert (first.id, first.video.name, first.start, first.end) == (
        first_clip,
        f"{first_clip}.avi",
        0.0,
        None,
    )
    assert data.captions[: len(captions[first_clip])] == captions[first_clip]
    assert data.caption_video.count(0) == len(captions[first_clip])
    assert data.notes["duplicate_captions"] == 3_730
    assert_protocol(data, "clip")
    assert "best-ranked caption" in data.protocol["multi_caption"]
    val = read(root, "msvd", split="val")
    assert (len(val.videos), val.videos[0].id) == (100, "bQJQGoJF7_k_162_169")


def test_activitynet_paragraphs_in_time_order(shared):
    root = shared("activitynet_captions")
    data = read(root, "activitynet_captions")
    raw = json.loads((root / "val_1.json").read_text())
    assert (len(data.videos), len(data.captions), data.split) == (4_917, 4_917, "val_1")
    first = data.videos[0]
    assert (first.id, first.video.name, first.start, first.end) == (
        "v_uqiMw7tQ1Cc",
        "v_uqiMw7tQ1Cc.mp4",
        0.0,
        None,
    )
    assert data.captions[0] == " ".join(s.strip() for s in raw["v_uqiMw7tQ1Cc"]["sentences"])
    assert data.captions[0].startswith("A weight lifting tutorial is given. The coach helps")
    # listed out of time order: the sentence starting at 4.17 s comes first
    out_of_order = [v.id for v in data.videos].index("v_D0pVkTEYQg8")
    sentences = [s.strip() for s in raw["v_D0pVkTEYQg8"]["sentences"]]
    assert data.captions[out_of_order] == " ".join(sentences[i] for i in (1, 0, 2))
    assert data.notes["sentences"] == 17_505 and data.notes["paragraphs_reordered"] == 131
    assert len(data.notes["bad_timestamps"]) == 5
    assert data.notes["bad_timestamps"][0] == "v_EGLJPCJnG64 sentence 4: [29.61, 89.72] s of 89.71 s"
    assert_protocol(data, "paragraph")
    assert len(read(root, "activitynet_captions", split="val_2").videos) == 4_885
    assert read(root, "activitynet_captions", video_ext=".mkv").videos[0].video.name == "v_uqiMw7tQ1Cc.mkv"


def test_youcook2_mil_nce_clips_and_segments(shared):
    root = shared("youcook2")
    data = read(root, "youcook2")
    row = next(csv.DictReader(open(root / "validation_youcook.csv", encoding="utf-8")))
    assert (len(data.videos), len(data.captions), data.split) == (3_350, 3_350, "validation")
    first = data.videos[0]
    assert (first.id, first.video.name, data.captions[0], first.start, first.end) == (
        "xHr8X2Wpmno_0",
        f"{row['video_id']}.mp4",
        row["text"],
        float(row["start"]),
        float(row["end"]),
    )
    assert data.notes == {"video_files": 436, "shared_spans": 1}
    assert_protocol(data, "clip")
    by_recipe = read(root, "youcook2", layout="by_recipe").videos[0].video
    assert by_recipe.relative_to(root) == Path("validation", row["task"], "xHr8X2Wpmno.mp4")

    segments = read(root, "youcook2", task="segments", video_ext=".mkv")
    database = json.loads((root / "youcookii_annotations_trainval.json").read_text())["database"]
    video, entry = next((k, v) for k, v in database.items() if v["subset"] == "validation")
    first = segments.videos[0]
    assert (len(segments.videos), len(segments.captions)) == (3_492, 3_492)
    assert (first.id, first.video.name, segments.captions[0], first.start, first.end) == (
        f"{video}_{entry['annotations'][0]['id']}",
        f"{video}.mkv",
        entry["annotations"][0]["sentence"],
        *map(float, entry["annotations"][0]["segment"]),
    )
    assert segments.notes == {"video_files": 457, "shared_spans": 1}
    assert_protocol(segments, "segment")


def test_dream1k_references_in_both_formats(shared):
    root = shared("dream1k")
    data = read(root, "dream1k")
    entry = json.loads((root / "DREAM-1k.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert (len(data.videos), len(data.captions)) == (1_000, 1_000)
    first = data.videos[0]
    assert (first.id, first.video.name, data.captions[0], first.start, first.end) == (
        "1",
        "1.mp4",
        entry["messages"][1]["content"][0]["reference"],
        0.0,
        None,
    )
    assert (data.notes["key_events"], data.notes["replaced_videos"]) == (6_298, 26)
    assert data.notes["sources"]["DREAM/youtube"] == 200
    assert_protocol(data, "clip")
    older = read(root / "tarsier-branch", "dream1k")
    assert older.captions == data.captions and [v.id for v in older.videos] == [v.id for v in data.videos]


def eval_config(*overrides: str):
    register_eval_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("eval", overrides=list(overrides)))


def test_check_only_prints_the_papers_counts(shared, tmp_path, capsys):
    data_root = tmp_path / "data"
    data_root.mkdir()
    for name in ("msrvtt", "msvd", "activitynet_captions", "youcook2", "dream1k"):
        (data_root / name).symlink_to(shared(name))
    write_miniature("didemo", data_root / "didemo", 3)
    run_eval(eval_config("zero_shot=retrieval_all", f"data_root={data_root}", "check_only=true"))
    run_eval(eval_config("zero_shot=youcook2_segments", f"data_root={data_root}", "check_only=true"))
    printed = capsys.readouterr().out
    for line in (
        "msrvtt: test split, 1,000 clips, 1,000 captions\n  videos: 1,000 referenced, 1,000 missing",
        "msvd: test split, 670 clips, 27,763 captions\n  videos: 670 referenced, 670 missing",
        "activitynet_captions: val_1 split, 4,917 clips, 4,917 captions",
        "youcook2: validation split, 3,350 clips, 3,350 captions\n  videos: 436 referenced, 436 missing",
        "youcook2_segments: validation split, 3,492 clips, 3,492 captions\n  videos: 457 referenced",
        "dream1k: test split, 1,000 clips, 1,000 captions\n  videos: 1,000 referenced, 1,000 missing",
        "didemo: test split, 3 clips, 3 captions\n  videos: 3 referenced, 0 missing",
        "  duplicate_captions: 3730",
        "  paragraphs_reordered: 131",
    ):
        assert line in printed
    assert printed.index("msrvtt:") < printed.index("activitynet_captions:") < printed.index("didemo:")


def test_check_only_reports_a_benchmark_without_files(shared, tmp_path, capsys):
    (tmp_path / "msrvtt").symlink_to(shared("msrvtt"))
    with pytest.raises(EvalError, match="5 of 6 benchmarks did not parse"):
        run_eval(eval_config("zero_shot=retrieval_all", f"data_root={tmp_path}", "check_only=true"))
    printed = capsys.readouterr().out
    assert "msrvtt: test split, 1,000 clips" in printed
    assert f"didemo: error: didemo: {tmp_path / 'didemo'}: no annotations file; looked for" in printed


def _didemo(root: Path, entries: list[dict], name: str = "test_data.json") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(entries))
    return root


def _moment(k: int, video: str, description: str) -> dict:
    return {
        "annotation_id": k,
        "description": description,
        "video": video,
        "times": [[0, 0], [0, 1], [0, 0], [1, 1]],
        "download_link": "https://www.flickr.com/video_download.gne?id=1",
        "num_segments": 6,
    }


DIDEMO = [
    _moment(0, "a@N00_1.mov", "the dog runs "),
    _moment(1, "b@N00_2.mp4", "a car passes"),
    _moment(2, "a@N00_1.mov", " the dog stops"),
    _moment(3, "c@N00_3.3gp", "someone waves"),
]


def test_didemo_paragraphs_in_file_order(tmp_path):
    root = _didemo(tmp_path / "LocalizingMoments" / "data", DIDEMO)
    data = read(root.parent, "didemo")  # the repository's data/ folder, from above it
    assert [v.id for v in data.videos] == ["a@N00_1.mov", "b@N00_2.mp4", "c@N00_3.3gp"]
    assert data.captions == ["the dog runs the dog stops", "a car passes", "someone waves"]
    assert [(v.video, v.start, v.end) for v in data.videos][0] == (root.parent / "a@N00_1.mov", 0.0, None)
    assert data.notes == {"descriptions": 4, "video_list": "none: every annotated video (3)"}
    assert_protocol(data, "paragraph")
    converted = read(root, "didemo", video_ext=".mp4")
    assert [v.video.name for v in converted.videos] == ["a@N00_1.mp4", "b@N00_2.mp4", "c@N00_3.mp4"]


def test_didemo_video_list_restricts_and_orders(tmp_path):
    root = _didemo(tmp_path, DIDEMO)
    (root / "test_list.txt").write_text("c@N00_3\na@N00_1.mov\n")  # a name with or without extension
    data = read(root, "didemo", files={"videos": "test_list.txt"})
    assert [v.id for v in data.videos] == ["c@N00_3.3gp", "a@N00_1.mov"]
    assert data.captions == ["someone waves", "the dog runs the dog stops"]
    assert data.caption_video == [0, 1] and data.files == [root / "test_data.json", root / "test_list.txt"]
    assert data.notes["video_list"] == "test_list.txt: 2 of the 3 annotated videos"
    (root / "test_list.txt").write_text("c@N00_3\nz@N00_9\n")
    with pytest.raises(BenchmarkFileError, match=r"test_list.txt: entry 2: 'z@N00_9' names no video"):
        read(root, "didemo", files={"videos": "test_list.txt"})


def test_didemo_malformed_entry_names_file_and_entry(tmp_path):
    broken = [*DIDEMO[:2], {k: v for k, v in _moment(7, "d@N00_4.mov", "x").items() if k != "description"}]
    root = _didemo(tmp_path, broken)
    with pytest.raises(BenchmarkFileError) as err:
        read(root, "didemo")
    message = str(err.value)
    assert message == f"didemo: {root / 'test_data.json'}: entry 2 (annotation_id 7) has no 'description'"
    _didemo(root, {"not": "a list"})
    with pytest.raises(BenchmarkFileError, match="expected a non-empty list"):
        read(root, "didemo")


# a miniature of 3 videos: the clips read, the captions, the clips of each video file
MINIATURE_COUNTS = {
    "msrvtt": (3, 3, 1),
    "msvd": (3, 6, 1),
    "activitynet_captions": (3, 3, 1),
    "youcook2": (6, 6, 2),
    "youcook2_segments": (6, 6, 2),
    "didemo": (3, 3, 1),
    "dream1k": (3, 3, 1),
}


@pytest.mark.parametrize("name", sorted(MINIATURES))
def test_miniature_reads_back_with_no_video_missing(tmp_path, name):
    options = write_miniature(name, tmp_path / name, 3)
    loaded = load_benchmark(BenchmarkConfig(**options))
    clips, captions, per_video = MINIATURE_COUNTS[name]
    assert (len(loaded.clips), len(loaded.data.captions)) == (clips, captions)
    assert len({c.video for c in loaded.clips}) == clips // per_video
    assert loaded.missing == [] and all(c.video.is_file() for c in loaded.clips)
    assert_protocol(loaded.data, loaded.data.protocol["unit"])


def test_miniature_keeps_the_quirks(tmp_path):
    msvd = load_benchmark(BenchmarkConfig(**write_miniature("msvd", tmp_path / "msvd", 2))).data
    assert msvd.notes["duplicate_captions"] == 1 and msvd.caption_video == [0, 0, 1, 1]
    anet = load_benchmark(
        BenchmarkConfig(**write_miniature("activitynet_captions", tmp_path / "anet", 1))
    ).data
    assert anet.captions == ["A man runs 0. Then the man jumps 0."]
    yc2 = load_benchmark(BenchmarkConfig(**write_miniature("youcook2", tmp_path / "yc2", 1))).data
    assert [(c.start, c.end) for c in yc2.videos] == [(0.0, 1.0), (1.0, 2.0)]
    didemo = load_benchmark(BenchmarkConfig(**write_miniature("didemo", tmp_path / "didemo", 2))).data
    assert didemo.captions == [
        "the bird flies 0 0 the bird flies 0 1",
        "the bird flies 1 0 the bird flies 1 1",
    ]


def _rewrite_csv(path: Path, change) -> None:
    rows = list(csv.reader(open(path, encoding="utf-8")))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(change(rows))


def _rewrite_jsonl(path: Path, change) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("\n".join(json.dumps(line) for line in change(lines)))


def _drop_reference(lines: list[dict]) -> list[dict]:
    del lines[1]["messages"][1]["content"][0]["reference"]
    return lines


def _mismatch(database: dict) -> dict:
    database["v_anet0001xyz"]["timestamps"].pop()
    return database


BAD_INPUT = [
    (
        "msrvtt",
        "MSRVTT_JSFUSION_test.csv",
        "csv",
        lambda rows: [rows[0][:3], *rows[1:]],
        "no column 'sentence'",
    ),
    (
        "msrvtt",
        "MSRVTT_JSFUSION_test.csv",
        "csv",
        lambda rows: [*rows, rows[1]],
        "line 5: video video7000 already on line 2",
    ),
    (
        "youcook2",
        "validation_youcook.csv",
        "csv",
        lambda rows: [rows[0], ["1", "1", "226", "x", "yc2vid0000x"]],
        r"line 2 \(video yc2vid0000x\): empty or negative span 1-1 s",
    ),
    (
        "activitynet_captions",
        "val_1.json",
        "json",
        _mismatch,
        "video v_anet0001xyz: 2 sentences but 1 timestamps",
    ),
    (
        "msvd",
        "captions_msvd.json",
        "json",
        lambda captions: {k: v for k, v in captions.items() if not k.startswith("clip001")},
        r"the caption map \(for entry 2 of test_list.txt\) has no 'clip001xyzAB_1_6'",
    ),
    (
        "dream1k",
        "DREAM-1k.jsonl",
        "jsonl",
        _drop_reference,
        r"line 2 \(vid 2\) has no messages\[1\].content\[0\].reference",
    ),
]


@pytest.mark.parametrize(("name", "file", "kind", "change", "message"), BAD_INPUT)
def test_bad_input_names_the_file_and_entry(tmp_path, name, file, kind, change, message):
    options = write_miniature(name, tmp_path, 3)
    path = tmp_path / file
    if kind == "csv":
        _rewrite_csv(path, change)
    elif kind == "jsonl":
        _rewrite_jsonl(path, change)
    else:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(BenchmarkFileError) as err:
        load_benchmark(BenchmarkConfig(**options))
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{options['reader']}: {path}: ")
    assert err.match(message)


@pytest.mark.parametrize(
    ("reader", "options", "relative"),
    [
        ("msrvtt", {}, ["MSRVTT_JSFUSION_test.csv", "msrvtt_data/MSRVTT_JSFUSION_test.csv"]),
        ("msvd", {"split": "val"}, ["val_list.txt"]),
        ("activitynet_captions", {"split": "val_2"}, ["val_2.json"]),
        ("youcook2", {}, ["validation_youcook.csv"]),
        ("youcook2", {"task": "segments"}, ["youcookii_annotations_trainval.json"]),
        ("didemo", {}, ["test_data.json", "data/test_data.json"]),
        ("dream1k", {}, ["DREAM-1k.jsonl", "data/annotations/DREAM-1k.jsonl"]),
    ],
)
def test_no_file_found_names_every_path_looked_for(tmp_path, reader, options, relative):
    with pytest.raises(BenchmarkFileError) as err:
        read(tmp_path, reader, **options)
    assert f"looked for {', '.join(str(tmp_path / path) for path in relative)} (" in str(err.value)


def test_unknown_options_are_refused(tmp_path):
    with pytest.raises(
        EvalError, match=r"youcook2: unknown task 'steps'; choose one of \['clips', 'segments'\]"
    ):
        read(tmp_path, "youcook2", task="steps")
    with pytest.raises(EvalError, match=r"msvd: unknown split 'train'"):
        read(tmp_path, "msvd", split="train")
