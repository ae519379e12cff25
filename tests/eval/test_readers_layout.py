"""Readers of benchmarks whose files are not in ../shared (CrossTask, HMDB51, Diving48, Ego-Exo4D
keystep, caption lists), on small files written in their published layout; and the bad-input errors."""

from __future__ import annotations

import json

import pytest

from action100m.eval.benchmarks import read_benchmark
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
    with pytest.raises(BenchmarkFileError, match="no split files"):
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
