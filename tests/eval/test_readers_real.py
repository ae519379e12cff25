"""Every reader on the real annotation files in ../shared/benchmarks, with a few stand-in videos at the
paths the benchmark gives its videos: counts, labels, spans, class texts, and the missing-video count;
and the same files laid out as each official release unpacks them, read from that folder or above it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from action100m.eval.benchmarks import READERS, read_benchmark
from action100m.eval.config import BenchmarkConfig
from action100m.eval.data import ClipDataset
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.run import load_benchmark
from tests.eval.conftest import source, stand_in
from tests.eval.test_readers_layout import same_from_every_root


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


EPIC_FILES = ("EPIC_100_validation.csv", "EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv")


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


COIN_DATABASE = {
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


def test_coin_taxonomy_with_annotations_in_the_coin_json_layout(real_root):
    root = real_root("coin")
    (root / "COIN.json").write_text(json.dumps({"database": COIN_DATABASE}))
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


def test_missing_file_is_named(real_root):
    root = real_root("coin")
    with pytest.raises(BenchmarkFileError) as err:
        read_benchmark("coin", source(root, task="step"))
    assert f"coin: {root}: no annotations file; looked for {root / 'COIN.json'}, " in str(err.value)


def _laid_out(root: Path, files: dict[str, Path]) -> Path:
    """`root` holding a link at each relative path of `files` to that file."""
    for relative, target in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(target)
    return root


# reader, options, the shared folder, and layouts: relative path -> shared file name (COIN.json: the one
# the test writes). The first layout is the files as ../shared has them; the others each release's own,
# read from the files' folder and from every folder above it.
RELEASES = [
    (
        "ssv2",
        {},
        "ssv2",
        [
            {
                "something-something-v2-labels.json": "something-something-v2-labels.json",
                "something-something-v2-validation.json": "something-something-v2-validation.json",
            },
            # Qualcomm's labels archive unpacks to labels/ and drops the prefix
            {
                "labels/labels.json": "something-something-v2-labels.json",
                "labels/validation.json": "something-something-v2-validation.json",
            },
        ],
    ),
    (
        "kinetics",
        {"task": "k400"},
        "kinetics400",
        [
            {"kinetics-400_val.csv": "kinetics-400_val.csv", "label_map_k400.txt": "label_map_k400.txt"},
            # DeepMind's tarball and CVDF's downloader; mmaction2's label map put beside the CSV
            {
                "kinetics400/validate.csv": "kinetics-400_val.csv",
                "kinetics400/label_map_k400.txt": "label_map_k400.txt",
            },
            {
                "k400/annotations/val.csv": "kinetics-400_val.csv",
                "k400/annotations/label_map_k400.txt": "label_map_k400.txt",
            },
        ],
    ),
    (
        "epic_kitchens",
        {"task": "action"},
        "epic_kitchens_100",
        [
            {name: name for name in EPIC_FILES},
            {f"epic-kitchens-100-annotations/{name}": name for name in EPIC_FILES},
        ],
    ),
    (
        "ucf101",
        {"split": "test1"},
        "ucf101",
        [
            {"classInd.txt": "classInd.txt", "testlist01.txt": "testlist01.txt"},
            {
                "ucfTrainTestlist/classInd.txt": "classInd.txt",
                "ucfTrainTestlist/testlist01.txt": "testlist01.txt",
            },
        ],
    ),
    (
        "ego4d_goalstep",
        {},
        "ego4d_goalstep",
        [
            {"goalstep_valid.json": "goalstep_valid.json"},
            {"v2/annotations/goalstep_val.json": "goalstep_valid.json"},  # the Ego4D CLI's name
            {"ego4d-goalstep/data/goalstep_valid.json": "goalstep_valid.json"},  # the repository's
        ],
    ),
    (
        "coin",
        {"task": "step"},
        "coin",
        [
            {"target_action_mapping.csv": "target_action_mapping.csv", "COIN.json": "COIN.json"},
            {
                "annotations/target_action_mapping.csv": "target_action_mapping.csv",
                "annotations/COIN.json": "COIN.json",
            },
        ],
    ),
]


@pytest.mark.parametrize(("reader", "options", "shared", "layouts"), RELEASES, ids=[r[0] for r in RELEASES])
def test_release_layouts_read_the_same(shared_dir, tmp_path, reader, options, shared, layouts):
    (tmp_path / "COIN.json").write_text(json.dumps({"database": COIN_DATABASE}))
    roots = []
    for k, layout in enumerate(layouts):
        files = {
            relative: tmp_path / name if name == "COIN.json" else shared_dir / "benchmarks" / shared / name
            for relative, name in layout.items()
        }
        root = _laid_out(tmp_path / f"layout{k}", files)
        (folder,) = {Path(relative).parent for relative in layout}
        roots += [root / up for up in (*reversed(folder.parents), folder)]  # each folder above the files
    assert same_from_every_root(reader, roots, **options).clips


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
        "msrvtt",
        "msvd",
        "activitynet_captions",
        "youcook2",
        "didemo",
        "dream1k",
        "captions",
    }
