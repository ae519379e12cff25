import random

import pytest

from action100m.dataset.schema import Annotation, Node
from action100m.errors import ConfigError
from action100m.train.data.config import DataConfig, ResampleConfig
from action100m.train.data.fields import FieldMix, keeps, node_texts
from action100m.train.data.module import plan_data

METADATA = {
    "transcript": [
        {"time": "0.5", "text": "first we"},
        {"time": 1.5, "text": " stir it "},
        {"time": "9", "text": "later"},
        {"time": "x", "text": "bad time"},
    ]
}


def node(start=0.0, end=2.0, brief="stir mixture", label="stir", caption=None):
    annotation = (
        Annotation("A bowl.", "A bowl on a table.", brief, "Stir it slowly.", "a person") if brief else None
    )
    return Node("n", None, 0, start, end, segment_caption=caption, action_label=label, annotation=annotation)


def test_every_field_reads_its_text_and_na_or_empty_ones_are_skipped():
    texts = node_texts(
        node(caption="  "),
        METADATA,
        [
            "action_brief",
            "summary_brief",
            "action_detailed",
            "summary_detailed",
            "segment_caption",
            "action_label",
            "asr",
        ],
    )
    assert texts == {
        "action_brief": "stir mixture",
        "summary_brief": "A bowl.",
        "action_detailed": "Stir it slowly.",
        "summary_detailed": "A bowl on a table.",
        "action_label": "stir",
        "asr": "first we stir it",
    }
    assert node_texts(node(brief="N/A", label=" N/A "), {}, ["action_brief", "action_label", "asr"]) == {}


def test_the_mix_draws_by_weight_among_the_fields_a_node_has():
    mix = FieldMix({"action_brief": 3.0, "action_label": 1.0, "asr": 0.0})
    assert mix.fields == ["action_brief", "action_label"]
    rng = random.Random(0)
    draws = [mix.choose({"action_brief": "b", "action_label": "l"}, rng) for _ in range(4000)]
    assert draws.count("b") / len(draws) == pytest.approx(0.75, abs=0.03)
    assert mix.choose({"action_label": "l"}, rng) == "l"
    assert mix.choose({"asr": "words"}, rng) is None


def test_bad_mixes_are_config_errors():
    with pytest.raises(ConfigError, match="unknown field 'caption'"):
        FieldMix({"caption": 1.0})
    with pytest.raises(ConfigError, match="at least one field a positive weight"):
        FieldMix({"action_brief": 0.0})


def test_node_filters():
    assert keeps(node(0, 2), 1.0, None, False) and not keeps(node(0, 2), 3.0, None, False)
    assert not keeps(node(0, 20), 0.0, 10.0, False)
    assert not keeps(node(brief=None), 0.0, None, True) and keeps(node(), 0.0, None, True)


def test_the_plan_counts_samples_and_names_a_field_no_node_has(shards, tmp_path):
    cfg = DataConfig(
        shards=str(shards),
        scale=0.5,
        text_fields={"action_brief": 1.0, "action_label": 1.0},
        resample=ResampleConfig(enabled=True),
    )
    scan = plan_data(cfg).scan
    assert 0 < scan.per_field["action_brief"] < scan.per_field["action_label"] == scan.samples
    assert sum(scan.brief_counts.values()) == scan.per_field["action_brief"]
    assert list((shards / "cache" / "scan").glob("*.scan"))  # cached next to the shards
    assert list((shards / "cache" / "plan").glob("plan-*.json"))
    annotated = plan_data(
        DataConfig(
            shards=str(shards), scale=0.5, annotated_only=True, min_duration=8.0, cache_dir=str(tmp_path)
        )
    )
    assert 0 < annotated.scan.samples < scan.per_field["action_brief"]

    # direct-mode builds annotate only nodes of 4 s or more
    short = dict(shards=str(shards), scale=0.5, max_duration=3.0, cache_dir=str(tmp_path))
    with pytest.raises(
        ConfigError, match="field 'action_brief' is in none of the .* usable nodes of the 4 shards"
    ):
        plan_data(DataConfig(**short, text_fields={"action_label": 1.0, "action_brief": 1.0}))
    with pytest.raises(
        ConfigError, match=r"no training samples in the 4 shards of data.scale=0.5 .*max_duration=3.0"
    ):
        plan_data(DataConfig(**short, text_fields={"action_brief": 1.0}))
