import json

import numpy as np

from action100m.synth.benchmark import LABELS_FILE, VALIDATION_FILE, VIDEO_DIR, class_name
from action100m.synth.sampler import sample_video_spec
from action100m.synth.world import COLOURS, HELD_OUT, HELD_OUT_SPLITS, SHAPES, VERBS
from action100m.video import open_video


def _load(synth_dir, folder="benchmark"):
    folder = synth_dir / folder
    labels = json.loads((folder / LABELS_FILE).read_text())
    entries = json.loads((folder / VALIDATION_FILE).read_text())
    return folder, labels, entries


def test_files_load_with_plain_json_in_the_ssv2_layout(synth_dir):
    folder, labels, entries = _load(synth_dir)
    assert list(labels) == sorted(labels) and list(labels.values()) == [str(i) for i in range(len(labels))]
    assert len(entries) == 8 and len({e["id"] for e in entries}) == 8
    for entry in entries:
        assert set(entry) == {"id", "label", "template", "placeholders"}
        assert entry["id"].isdigit()
        key = entry["template"].replace("[", "").replace("]", "")  # the SSv2 rule for an entry's class
        assert key in labels
        filled = entry["template"]
        for placeholder in entry["placeholders"]:
            filled = filled.replace(f"[{placeholder}]", placeholder, 1)
        assert entry["label"] == filled.lower()


def test_every_entry_references_a_decodable_clip(synth_dir):
    folder, _, entries = _load(synth_dir)
    for entry in entries:
        info = open_video(folder / VIDEO_DIR / f"{entry['id']}.mp4").info
        assert info.num_frames >= info.fps and (info.width, info.height) == (128, 128)
    assert len(list((folder / VIDEO_DIR).iterdir())) == len(entries)


def test_classes_are_the_held_out_compositions_dealt_evenly(synth_dir):
    _, labels, entries = _load(synth_dir)
    assert set(labels) == {class_name(*composition) for composition in HELD_OUT}
    assert len({entry["template"] for entry in entries}) == len(entries)  # 8 clips, 8 different classes


def test_held_out_compositions_never_appear_in_training_videos(truths):
    held_out = {(verb, colour, shape) for verb, colour, shape in HELD_OUT}
    seen = {(s["verb"], s["object"]["colour"], s["object"]["shape"]) for t in truths for s in t["steps"]}
    assert seen and not seen & held_out
    # and over many more videos than the fixture renders
    for seed in range(500):
        for step in sample_video_spec(np.random.default_rng(seed), "v").steps:
            assert (step.verb, step.colour, step.shape) not in held_out


def test_the_validation_split_is_other_held_out_compositions_in_the_same_layout(synth_dir, truths):
    test, validation = (set(HELD_OUT_SPLITS[split]) for split in ("test", "validation"))
    assert len(test) == 28 and len(validation) == 27 and not test & validation
    for split in (test, validation):  # every verb, colour and shape is in training and in each split
        assert {v for v, _, _ in split} == set(VERBS)
        assert {c for _, c, _ in split} == set(COLOURS) and {s for _, _, s in split} == set(SHAPES)
    folder, labels, entries = _load(synth_dir, "validation")
    assert set(labels) == {class_name(*composition) for composition in validation}
    assert len(entries) == 4 and len({e["template"] for e in entries}) == 4
    assert all((folder / VIDEO_DIR / f"{e['id']}.mp4").is_file() for e in entries)
    seen = {(s["verb"], s["object"]["colour"], s["object"]["shape"]) for t in truths for s in t["steps"]}
    assert not seen & validation
    for seed in range(300):
        for step in sample_video_spec(np.random.default_rng(seed), "v").steps:
            assert (step.verb, step.colour, step.shape) not in validation
