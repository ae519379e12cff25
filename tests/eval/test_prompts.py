import json

import pytest

from action100m.errors import ConfigError
from action100m.eval.prompts import (
    TEMPLATE_SETS,
    match_key,
    normalise_class_name,
    prompt_texts,
    split_camel_case,
    template_set,
)
from action100m.eval.template_data import CLIP_UCF101_CLASSES


def test_template_sets_are_the_published_lists_verbatim(shared_dir):
    published = json.loads((shared_dir / "benchmarks" / "prompts" / "prompt_templates.json").read_text())
    for name in ("clip_kinetics700", "clip_ucf101", "actionclip"):
        assert list(TEMPLATE_SETS[name]) == published[name]["templates"]
    assert list(CLIP_UCF101_CLASSES) == published["clip_ucf101"]["classes"]
    assert (len(TEMPLATE_SETS["clip_kinetics700"]), len(TEMPLATE_SETS["clip_ucf101"])) == (28, 48)


def test_template_set_choices_and_checks():
    assert template_set("default") == ["{}"]
    assert template_set("default", ["a clip of {}.", "{}"]) == ["a clip of {}.", "{}"]
    with pytest.raises(ConfigError, match="unknown template set 'nope'"):
        template_set("nope")
    with pytest.raises(ConfigError, match="exactly once"):
        template_set("default", ["no slot"])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("Approaching [something] with your camera", "approaching something with your camera"),
        ("brush_hair", "brush hair"),
        ("passing American football (in game)", "passing american football (in game)"),
        ("Replace  CD Drive With SSD", "replace CD drive with SSD"),
    ],
)
def test_normalise_class_name(name, text):
    assert normalise_class_name(name) == text


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("ReplaceCDDriveWithSSD", "Replace CD Drive With SSD"),
        ("MakeRJ45Cable", "Make RJ45 Cable"),
        ("YoYo", "Yo Yo"),
        ("ApplyEyeMakeup", "Apply Eye Makeup"),
    ],
)
def test_split_camel_case(name, words):
    assert split_camel_case(name) == words


def test_match_key_joins_spellings():
    assert match_key("HandstandPushups") == match_key("Hand Stand Pushups") == match_key("hand_stand-pushups")


def test_prompt_texts_class_major():
    assert prompt_texts(["a", "b"], ["{}", "x {}"]) == ["a", "x a", "b", "x b"]
