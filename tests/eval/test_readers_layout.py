"""Readers of benchmarks whose files are not in ../shared (CrossTask, HMDB51, Diving48, Ego-Exo4D
keystep, caption lists), on small files written in their published layout; the same files found from
the folder their archive unpacks to and from the one above; and the bad-input and missing-file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from action100m.eval.benchmarks import Benchmark, RetrievalSet, read_benchmark
from action100m.eval.errors import BenchmarkFileError, EvalError
from tests.eval.conftest import source

CROSSTASK_CARDS = """23521
Make Jello Shots
http://www.wikihow.com/Make-Jello-Shots
3
pour water,pour jello powder,stir mixture

16815
Jack Up a Car
http://www.wikihow.com/Jack-Up-a-Car
2
brake on,raise jack

"""


def reading(data: Benchmark | RetrievalSet, root: Path) -> tuple:
    """All a reader read, with video paths relative to `root`: the same files read from two roots give
    the same reading."""
    if isinstance(data, RetrievalSet):
        return data.captions, data.caption_video, [(c.id, c.video.relative_to(root)) for c in data.videos]
    clips = [(c.id, c.label, c.start, c.end, c.video.relative_to(root)) for c in data.clips]
    return data.class_names, data.class_texts, clips


def same_from_every_root(reader: str, roots: list[Path], **options: str) -> Benchmark | RetrievalSet:
    """The reading from `roots[0]`, after checking that every other root reads the same."""
    first = read_benchmark(reader, source(roots[0], **options))
    for root in roots[1:]:
        assert reading(read_benchmark(reader, source(root, **options)), root) == reading(first, roots[0])
    return first


@pytest.fixture
def crosstask(tmp_path):
    root = tmp_path / "crosstask_release"
    (root / "annotations").mkdir(parents=True)
    (root / "tasks_primary.txt").write_text(CROSSTASK_CARDS)
    (root / "videos_val.csv").write_text(
        "23521,_uAZw6L_R5g,https://www.youtube.com/watch?v=_uAZw6L_R5g\n"
        "16815,-xyz_1,https://www.youtube.com/watch?v=-xyz_1\n"
        "16815,noannot,https://www.youtube.com/watch?v=noannot\n"
        "91515,related1,https://www.youtube.com/watch?v=related1\n"
    )
    (root / "annotations" / "23521__uAZw6L_R5g.csv").write_text("1,3.5,7.25\n3,10,12.5\n")
    (root / "annotations" / "16815_-xyz_1.csv").write_text("2,0.0,4.0\n")
    return root


def test_crosstask_steps_across_primary_tasks(crosstask):
    bench = read_benchmark("crosstask", source(crosstask, task="step"))
    assert bench.class_names == ["pour water", "pour jello powder", "stir mixture", "brake on", "raise jack"]
    assert [(c.id, c.label, c.start, c.end) for c in bench.clips] == [
        ("_uAZw6L_R5g_0", 0, 3.5, 7.25),
        ("_uAZw6L_R5g_1", 2, 10.0, 12.5),
        ("-xyz_1_0", 4, 0.0, 4.0),
    ]
    assert bench.clips[0].video == crosstask / "videos" / "_uAZw6L_R5g.mp4"
    assert bench.notes == {"unannotated_videos": 1}


def test_crosstask_tasks_are_the_primary_videos(crosstask):
    bench = read_benchmark("crosstask", source(crosstask, task="task", layout="by_task"))
    assert bench.class_texts == ["make jello shots", "jack up a car"]
    assert [(c.id, c.label) for c in bench.clips] == [("_uAZw6L_R5g", 0), ("-xyz_1", 1), ("noannot", 1)]
    assert bench.clips[1].video == crosstask / "videos" / "16815" / "-xyz_1.mp4"


def test_crosstask_bad_step_number_names_the_file(crosstask):
    (crosstask / "annotations" / "16815_-xyz_1.csv").write_text("3,0.0,4.0\n")
    with pytest.raises(BenchmarkFileError, match=r"16815_-xyz_1\.csv: line 1: step 3 outside 1\.\.2"):
        read_benchmark("crosstask", source(crosstask, task="step"))


def test_hmdb51_split_files_with_trailing_spaces(tmp_path):
    root = tmp_path / "testTrainMulti_7030_splits"
    root.mkdir()
    for name, lines in {
        "brush_hair": ["a.avi 1 ", "b.avi 2 ", "c.avi 0 "],
        "sword_exercise": ["d.avi 2 \r"],
    }.items():
        (root / f"{name}_test_split1.txt").write_text("\n".join(lines) + "\n")
        (root / f"{name}_test_split2.txt").write_text("x.avi 2 \n")
    bench = read_benchmark("hmdb51", source(root, split="test1"))
    assert bench.class_texts == ["brush hair", "sword exercise"]
    assert [(c.id, c.label) for c in bench.clips] == [("b", 0), ("d", 1)]
    assert bench.clips[0].video == root / "hmdb51_org" / "brush_hair" / "b.avi"
    assert [c.id for c in read_benchmark("hmdb51", source(root, split="train1")).clips] == ["a"]
    with pytest.raises(BenchmarkFileError, match="no splits folder"):
        read_benchmark("hmdb51", source(root, split="test3"))


def test_diving48_vocabulary_in_words(tmp_path):
    vocab = [
        ["Back", "15som", "05Twis", "FREE"],
        ["Forward", "Dive", "NoTwis", "PIKE"],
        ["Inward", "2som", "25Twis", "STR"],
    ]
    (tmp_path / "Diving48_vocab.json").write_text(json.dumps(vocab))
    entries = [{"vid_name": "8qRmKunCjtY_00016", "label": 2, "start_frame": 0, "end_frame": 78}]
    (tmp_path / "Diving48_V2_test.json").write_text(json.dumps(entries))
    bench = read_benchmark("diving48", source(tmp_path))
    assert bench.class_texts == [
        "back, 1.5 somersaults, 0.5 twist, free position",
        "forward, dive, no twist, pike position",
        "inward, 2 somersaults, 2.5 twists, straight position",
    ]
    assert (bench.clips[0].label, bench.clips[0].video) == (2, tmp_path / "rgb" / "8qRmKunCjtY_00016.mp4")


def test_egoexo4d_keystep_ego_clips(tmp_path):
    folder = tmp_path / "annotations" / "keystep_benchmark"
    folder.mkdir(parents=True)
    header = "label_id,step_unique_id,step_name,scenario_name\n"
    (folder / "label_mapping.csv").write_text(
        header + "1,502,Check paper recipe,cooking\n0,1567,Stir the mixture,cooking\n"
    )
    name = "val/georgiatech_covid_07_6/start0.85598_end33.20377_aria02_214-1.mp4"
    segment = {
        "segment_name_list": [name],
        "ego_segment_name": name,
        "take_uid": "77cd",
        "take_name": "georgiatech_covid_07_6",
        "start_time": 0.85598,
        "end_time": 33.20377,
        "step_unique_id": 502,
        "label_id": 1,
        "step_name": "Check paper recipe",
    }
    (folder / "keystep_segment_val.json").write_text(json.dumps({"splits": "val", "segments": [segment]}))
    bench = read_benchmark("egoexo4d_keystep", source(tmp_path))
    assert bench.class_texts == ["stir the mixture", "check paper recipe"]
    assert (bench.clips[0].label, bench.clips[0].video) == (
        1,
        tmp_path / "keystep_benchmark" / "clips_448p" / name,
    )
    segment["label_id"] = 7
    (folder / "keystep_segment_val.json").write_text(json.dumps({"segments": [segment]}))
    with pytest.raises(BenchmarkFileError, match="unknown label_id 7"):
        read_benchmark("egoexo4d_keystep", source(tmp_path))
    (folder / "label_mapping.csv").write_text(header)
    with pytest.raises(EvalError, match="empty class list"):
        read_benchmark("egoexo4d_keystep", source(tmp_path))


def test_caption_lists_json_and_jsonl(tmp_path):
    items = [
        {"video": "a.mp4", "caption": "a cat"},
        {"video": "b.mp4", "caption": "a dog"},
        {"video": "a.mp4", "caption": "a kitten"},
        {"video": "a.mp4", "caption": "end", "start": 2, "end": 4},
    ]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    data = read_benchmark("captions", source(tmp_path, files={"captions": "captions.jsonl"}))
    assert [c.video.name for c in data.videos] == ["a.mp4", "b.mp4", "a.mp4"]
    assert data.caption_video == [0, 1, 0, 2] and (data.videos[2].start, data.videos[2].end) == (2.0, 4.0)


def test_unknown_label_string_is_an_error(tmp_path):
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({"Holding something": "0"}))
    entries = [{"id": "7", "label": "x", "template": "Dropping [something]", "placeholders": ["x"]}]
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(entries))
    with pytest.raises(BenchmarkFileError, match=r"entry 7: unknown label 'Dropping something'"):
        read_benchmark("ssv2", source(tmp_path))


def test_unknown_option_values_are_errors(tmp_path):
    with pytest.raises(EvalError, match=r"unknown split 'test'; choose one of \['validation', 'train'\]"):
        read_benchmark("ssv2", source(tmp_path, split="test"))
    with pytest.raises(EvalError, match="unknown task 'k900'"):
        read_benchmark("kinetics", source(tmp_path, task="k900"))


def test_crosstask_from_the_release_folder_and_its_parent(crosstask):
    for task in ("step", "task"):
        assert same_from_every_root("crosstask", [crosstask, crosstask.parent], task=task).clips
    (crosstask / "annotations").rename(crosstask / "moved")
    assert read_benchmark("crosstask", source(crosstask, task="task")).clips  # tasks need no annotations
    with pytest.raises(BenchmarkFileError) as err:
        read_benchmark("crosstask", source(crosstask, task="step"))
    looked = [crosstask / "annotations" / "*.csv", crosstask / "crosstask_release" / "annotations" / "*.csv"]
    assert f"no annotations folder; looked for {looked[0]}, {looked[1]} (" in str(err.value)


def test_hmdb51_from_the_splits_folder_and_its_parent(tmp_path):
    root = tmp_path / "testTrainMulti_7030_splits"
    root.mkdir()
    (root / "brush_hair_test_split1.txt").write_text("a.avi 2 \nb.avi 1 \n")
    (root / "cartwheel_test_split1.txt").write_text("c.avi 2 \n")
    bench = same_from_every_root("hmdb51", [root, tmp_path], split="test1")
    assert [(c.id, c.label) for c in bench.clips] == [("a", 0), ("c", 1)]


def test_diving48_from_its_files_and_mmaction2s_annotations_folder(tmp_path):
    for folder in (tmp_path / "flat", tmp_path / "mm" / "annotations"):
        folder.mkdir(parents=True)
        (folder / "Diving48_vocab.json").write_text(json.dumps([["Back", "Dive", "NoTwis", "TUCK"]]))
        entries = [{"vid_name": "v1", "label": 0, "start_frame": 0, "end_frame": 9}]
        (folder / "Diving48_V2_test.json").write_text(json.dumps(entries))
    assert same_from_every_root("diving48", [tmp_path / "flat", tmp_path / "mm"]).clips[0].id == "v1"


def test_egoexo4d_from_the_download_folder_annotations_or_keystep_benchmark(tmp_path):
    folder = tmp_path / "annotations" / "keystep_benchmark"
    folder.mkdir(parents=True)
    (folder / "label_mapping.csv").write_text(
        "label_id,step_unique_id,step_name,scenario_name\n0,1567,Stir the mixture,cooking\n"
    )
    segment = {"ego_segment_name": "val/t/start0_end1_aria01.mp4", "label_id": 0}
    (folder / "keystep_segment_val.json").write_text(json.dumps({"segments": [segment]}))
    bench = same_from_every_root("egoexo4d_keystep", [tmp_path, tmp_path / "annotations", folder])
    assert [c.label for c in bench.clips] == [0]


def test_captions_json_or_jsonl_by_name_but_not_both(tmp_path):
    item = {"video": "a.mp4", "caption": "a cat"}
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "captions.json").write_text(json.dumps([item]))
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "captions.jsonl").write_text(json.dumps(item) + "\n")
    same_from_every_root("captions", [tmp_path / "json", tmp_path / "jsonl"])
    (tmp_path / "json" / "captions.jsonl").write_text(json.dumps(item) + "\n")
    with pytest.raises(
        BenchmarkFileError, match="2 candidate captions files: .*captions.json, .*captions.jsonl"
    ):
        read_benchmark("captions", source(tmp_path / "json"))


def test_two_candidate_files_are_an_error_not_a_guess(tmp_path):
    (tmp_path / "something-something-v2-labels.json").write_text("{}")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "labels.json").write_text("{}")
    with pytest.raises(BenchmarkFileError) as err:
        read_benchmark("ssv2", source(tmp_path))
    assert str(err.value) == (
        f"ssv2: {tmp_path}: 2 candidate labels files: {tmp_path / 'something-something-v2-labels.json'}, "
        f"{tmp_path / 'labels' / 'labels.json'}; point zero_shot.root at the folder of one, or set "
        "zero_shot.files.labels=PATH"
    )


def test_a_renamed_file_is_looked_for_in_the_archive_folders_too(tmp_path):
    folder = tmp_path / "ucfTrainTestlist"
    folder.mkdir()
    (folder / "classes.txt").write_text("1 ApplyEyeMakeup\r\n")
    (folder / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n")
    renamed = read_benchmark("ucf101", source(tmp_path, split="test1", files={"classes": "classes.txt"}))
    absolute = {"classes": str(folder / "classes.txt")}
    assert renamed.files == read_benchmark("ucf101", source(tmp_path, split="test1", files=absolute)).files
    assert renamed.files == [folder / "classes.txt", folder / "testlist01.txt"]


# the first file each reader needs, and every path (relative to the root) where it is looked for
LOOKED_FOR = [
    (
        "ssv2",
        {},
        "ssv2: {root}: no labels file",
        [
            f"{folder}{name}"
            for folder in ("", "labels/", "annotations/")
            for name in ("something-something-v2-labels.json", "labels.json")
        ],
    ),
    ("synth", {}, "synth: {root}: no labels file", ["something-something-v2-labels.json", "labels.json"]),
    (
        "kinetics",
        {"task": "k400"},
        "kinetics: {root}: no annotations file",
        [
            f"{folder}{name}"
            for folder in ("", "annotations/", "kinetics400/", "k400/annotations/")
            for name in ("kinetics-400_val.csv", "validate.csv", "val.csv")
        ],
    ),
    (
        "kinetics",
        {"task": "k700", "split": "train"},
        "kinetics: {root}: no annotations file",
        [
            f"{folder}{name}"
            for folder in (
                "",
                "annotations/",
                "kinetics700/",
                "k700/annotations/",
                "kinetics700_2020/",
                "k700-2020/annotations/",
            )
            for name in ("kinetics-700_train.csv", "train.csv")
        ],
    ),
    (
        "epic_kitchens",
        {},
        "epic_kitchens_100: {root}: no annotations file",
        ["EPIC_100_validation.csv", "epic-kitchens-100-annotations/EPIC_100_validation.csv"],
    ),
    (
        "ego4d_goalstep",
        {},
        "ego4d_goalstep: {root}: no annotations file",
        [
            f"{folder}{name}"
            for folder in ("", "annotations/", "v2/annotations/", "data/", "ego4d-goalstep/data/")
            for name in ("goalstep_valid.json", "goalstep_val.json")
        ],
    ),
    (
        "egoexo4d_keystep",
        {},
        "egoexo4d_keystep: {root}: no label_mapping file",
        [
            "annotations/keystep_benchmark/label_mapping.csv",
            "keystep_benchmark/label_mapping.csv",
            "label_mapping.csv",
        ],
    ),
    (
        "coin",
        {},
        "coin: {root}: no taxonomy file",
        ["target_action_mapping.csv", "annotations/target_action_mapping.csv"],
    ),
    (
        "crosstask",
        {},
        "crosstask: {root}: no tasks file",
        ["tasks_primary.txt", "crosstask_release/tasks_primary.txt"],
    ),
    ("ucf101", {}, "ucf101: {root}: no classes file", ["classInd.txt", "ucfTrainTestlist/classInd.txt"]),
    (
        "hmdb51",
        {},
        "hmdb51: {root}: no splits folder",
        ["*_test_split1.txt", "testTrainMulti_7030_splits/*_test_split1.txt"],
    ),
    (
        "diving48",
        {},
        "diving48: {root}: no vocab file",
        ["Diving48_vocab.json", "annotations/Diving48_vocab.json"],
    ),
    ("captions", {}, "captions: {root}: no captions file", ["captions.json", "captions.jsonl"]),
]


@pytest.mark.parametrize(("reader", "options", "start", "relative"), LOOKED_FOR)
def test_no_file_found_names_every_path_looked_for(tmp_path, reader, options, start, relative):
    with pytest.raises(BenchmarkFileError) as err:
        read_benchmark(reader, source(tmp_path, **options))
    message = str(err.value)
    assert "\n" not in message and message.startswith(start.format(root=tmp_path))
    assert f"looked for {', '.join(str(tmp_path / path) for path in relative)} (" in message
