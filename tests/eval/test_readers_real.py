"""Every reader on the real annotation files in ../shared/benchmarks, with a few stand-in videos at the
paths the benchmark gives its videos: counts, labels, spans, class texts, and the missing-video count."""

from __future__ import annotations

import csv
import json

import pytest

from action100m.eval.benchmarks import READERS, read_benchmark
from action100m.eval.config import BenchmarkConfig
from action100m.eval.data import ClipDataset
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.run import load_benchmark
from tests.eval.conftest import source, stand_in


def _loaded(reader: str, root, **options):
    return load_benchmark(BenchmarkConfig(name=reader, reader=reader, root=str(root), **options))


def test_ssv2_counts_labels_and_missing_videos(real_root):
    root = real_root("ssv2")
    labels = json.loads((root / "something-something-v2-labels.json").read_text())
    entries = json.loads((root / "something-something-v2-validation.json").read_text())
    for entry in entries[:2]:
        stand_in(root / "20bn-something-something-v2" / f"{entry['id']}.webm")
    loaded = _loaded("ssv2", root)
    bench = loaded.data
    assert (len(bench.clips), len(bench.class_names), bench.split) == (24_777, 174, "validation")
    assert len(loaded.missing) == 24_775
    first = bench.clips[0]
    assert (first.id, first.video.name) == ("74225", "74225.webm")
    assert bench.class_names[first.label] == entries[0]["template"].replace("[", "").replace("]", "")
    assert first.label == int(labels[bench.class_names[first.label]])
    assert bench.class_texts[0] == "approaching something with your camera"
    # a stand-in decodes through the same dataset the run uses
    sample = ClipDataset(bench.clips[:1], lambda f: f.permute(0, 3, 1, 2).float(), num_frames=4)[0]
    assert sample.error is None and sample.views.shape == (1, 4, 3, 48, 64)


def test_kinetics400_counts_names_and_layouts(real_root):
    root = real_root("kinetics400")
    bench = read_benchmark("kinetics", source(root, task="k400"))
    assert (len(bench.clips), len(bench.class_names), bench.name) == (19_906, 400, "kinetics400")
    first = bench.clips[0]
    assert (first.video.name, bench.class_names[first.label]) == (
        "0wR5jVB-WPk_000417_000427.mp4",
        "abseiling",
    )
    from_csv = read_benchmark("kinetics", source(root, task="k400", class_names="annotations"))
    assert from_csv.class_names == bench.class_names  # label map order = alphabetical = the CSV's labels
    rows = list(csv.DictReader(open(root / "kinetics-400_val.csv")))
    quoted = next(i for i, row in enumerate(rows) if " " in row["label"])
    mm = read_benchmark("kinetics", source(root, task="k400", layout="by_label_underscored")).clips[quoted]
    assert mm.video.parent.name == rows[quoted]["label"].replace(" ", "_")
    stand_in(root / rows[5]["label"] / f"{bench.clips[5].video.name}")
    assert len(_loaded("kinetics", root, task="k400", layout="by_label").missing) == 19_905


@pytest.mark.parametrize(
    ("task", "classes", "occurring"), [("verb", 97, 78), ("noun", 300, 211), ("action", 1352, 1352)]
)
def test_epic_kitchens_tasks(real_root, task, classes, occurring):
    root = real_root("epic_kitchens_100")
    bench = read_benchmark("epic_kitchens", source(root, task=task))
    assert (len(bench.clips), len(bench.class_names), len({c.label for c in bench.clips})) == (
        9_668,
        classes,
        occurring,
    )
    first = bench.clips[0]  # P01_11_0: 00:00:00.00 -> 00:00:01.89 (frames 1..113 at 60 fps would say so too)
    assert (first.id, first.start, first.end, first.video.parts[-3:]) == (
        "P01_11_0",
        0.0,
        1.89,
        ("P01", "videos", "P01_11.MP4"),
    )
    if task == "noun":
        assert bench.class_texts[bench.class_names.index("board:chopping")] == "chopping board"
    if task == "verb":
        assert bench.class_texts[bench.class_names.index("turn-on")] == "turn on"
    if task == "action":
        assert bench.class_texts[first.label] == "take plate"


def test_epic_timestamps_not_frames(real_root):
    root = real_root("epic_kitchens_100")
    bench = read_benchmark("epic_kitchens", source(root, task="verb", layout="participant"))
    rows = {r["narration_id"]: r for r in csv.DictReader(open(root / "EPIC_100_validation.csv"))}
    clip = bench.clips[-1]
    hours, minutes, seconds = rows[clip.id]["stop_timestamp"].split(":")
    assert clip.end == pytest.approx(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    assert clip.video.parent.name == rows[clip.id]["participant_id"]
    stand_in(root / "P01" / "P01_11.MP4")
    loaded = _loaded("epic_kitchens", root, task="verb", layout="participant")
    assert len(loaded.missing) == 9_668 - sum(r["video_id"] == "P01_11" for r in rows.values())


@pytest.mark.parametrize(
    ("task", "clips", "classes"), [("step", 3_349, 355), ("substep", 4_347, 358), ("goal", 134, 43)]
)
def test_ego4d_goalstep_levels(real_root, task, clips, classes):
    bench = read_benchmark("ego4d_goalstep", source(real_root("ego4d_goalstep"), task=task))
    assert (len(bench.clips), len(bench.class_names)) == (clips, classes)
    assert all(c.end > c.start for c in bench.clips)
    if task == "step":
        assert bench.class_texts[bench.clips[0].label] == "knead the dough in a dough mixer"
    if task == "goal":
        assert "make bread" in bench.class_texts


@pytest.mark.parametrize(
    ("split", "clips"), [("test1", 3_783), ("test2", 3_734), ("test3", 3_696), ("train1", 9_537)]
)
def test_ucf101_splits(real_root, split, clips):
    bench = read_benchmark("ucf101", source(real_root("ucf101"), split=split))
    assert (len(bench.clips), len(bench.class_names)) == (clips, 101)


def test_ucf101_labels_by_folder_and_clip_names_by_name(real_root):
    root = real_root("ucf101")
    bench = read_benchmark("ucf101", source(root, split="test1"))
    odd = [c for c in bench.clips if "HandStandPushups" in c.id]
    assert len(odd) == 28 and {bench.class_names[c.label] for c in odd} == {"HandstandPushups"}
    clip_names = read_benchmark("ucf101", source(root, split="test1", class_names="clip"))
    for name, text in [
        ("HammerThrow", "hammer throw"),
        ("Hammering", "hammering"),
        ("JumpRope", "jump rope"),
    ]:
        assert clip_names.class_texts[bench.class_names.index(name)] == text
    stand_in(root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    assert len(_loaded("ucf101", root, split="test1").missing) == 3_782


def test_coin_taxonomy_with_annotations_in_the_coin_json_layout(real_root):
    root = real_root("coin")
    database = {
        "-abc_d": {
            "class": "ReplaceCDDriveWithSSD",
            "recipe_type": 131,
            "subset": "testing",
            "start": 1.0,
            "end": 50.0,
            "duration": 60.0,
            "video_url": "https://youtube.com/watch?v=-abc_d",
            "annotation": [
                {"id": "212", "segment": [2.0, 9.5], "label": "take out the laptop CD drive"},
                {"id": "214", "segment": [10.0, 20.0], "label": "install the SSD onto the hard disk"},
            ],
        },
        "train01": {
            "class": "WashHair",
            "recipe_type": 1,
            "subset": "training",
            "start": 0.0,
            "end": 9.0,
            "duration": 9.0,
            "video_url": "",
            "annotation": [{"id": "5", "segment": [0, 3], "label": "z"}],
        },
    }
    (root / "COIN.json").write_text(json.dumps({"database": database}))
    steps = read_benchmark("coin", source(root, task="step"))
    assert (len(steps.class_names), [c.label for c in steps.clips]) == (778, [211, 213])
    assert (steps.clips[0].start, steps.clips[0].end, steps.clips[0].video.parts[-3:]) == (
        2.0,
        9.5,
        ("videos", "131", "-abc_d.mp4"),
    )
    assert steps.class_texts[211] == "take out the laptop CD drive"
    tasks = read_benchmark("coin", source(root, task="task"))
    assert (len(tasks.class_names), [c.label for c in tasks.clips]) == (180, [131])
    assert (
        tasks.class_names[131] == "ReplaceCDDriveWithSSD"
        and tasks.class_texts[131] == "replace CD drive with SSD"
    )
    assert len(read_benchmark("coin", source(root, task="step", split="training")).clips) == 1


def test_missing_file_is_named(real_root, tmp_path):
    with pytest.raises(BenchmarkFileError, match=r"COIN\.json: missing annotations file"):
        read_benchmark("coin", source(real_root("coin"), task="step"))
    with pytest.raises(BenchmarkFileError, match=r"something-something-v2-labels\.json: missing labels file"):
        read_benchmark("ssv2", source(tmp_path))


def test_every_reader_is_registered():
    assert set(READERS) == {
        "ssv2",
        "kinetics",
        "epic_kitchens",
        "ego4d_goalstep",
        "egoexo4d_keystep",
        "coin",
        "crosstask",
        "ucf101",
        "hmdb51",
        "diving48",
        "synth",
        "captions",
    }
