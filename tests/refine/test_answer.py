"""Parsing and validating the LLM's answer: the JSON is found wherever it is, and judged by the rules."""

import json

import pytest

from action100m.dataset.schema import NOT_APPLICABLE, read_official_json
from action100m.refine.answer import (
    ANNOTATION_SCHEMA,
    AnswerError,
    AnswerRules,
    extract_json,
    parse_answer,
    validate_answer,
)

RULES = AnswerRules()


def answer(**changes: str) -> dict:
    data = {
        "summary": {"brief": "A woman stirs a pot of soup.", "detailed": "A woman in an apron stirs soup."},
        "action": {
            "brief": "stir the soup",
            "detailed": "Stir the soup slowly with a ladle.",
            "actor": "a woman",
        },
    }
    for key, value in changes.items():
        group, field = key.split("_", 1)
        data[group][field] = value
    return data


def test_json_is_found_after_reasoning_and_inside_code_fences():
    text = json.dumps(answer())
    replies = [
        text,
        f"Let me think. The captions agree on {{soup}}.\n\n```json\n{text}\n```",
        f"<think>first a draft {{'not': json}}</think>\nFinal answer: {text} Done.",
        f"Draft: {json.dumps({'note': 1})} then {text}",
    ]
    for reply in replies:
        assert parse_answer(reply, RULES).action_brief == "stir the soup"


def test_last_annotation_wins_over_other_objects():
    first, second = json.dumps(answer()), json.dumps(answer(action_brief="pour the soup"))
    reply = f"{first}\nOn reflection:\n{second}\n{json.dumps({'confidence': 0.9})}"
    assert parse_answer(reply, RULES).action_brief == "pour the soup"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I'm sorry, I can't help with that.", "no JSON object in the reply"),
        ('{"summary": {"brief": "A woman', "no JSON object"),  # cut off
        ("", "no JSON object"),
        ("[1, 2, 3]", "no JSON object"),
    ],
)
def test_replies_without_json(reply, reason):
    with pytest.raises(AnswerError, match=reason):
        extract_json(reply)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"summary": "soup", "action": answer()["action"]}, "'summary' must be an object"),
        ({"summary": answer()["summary"]}, "'action' must be an object"),
        (answer(action_actor=None), "action.actor must be a string, got nothing"),
        (
            {**answer(), "action": {**answer()["action"], "brief": 3}},
            "action.brief must be a string, got int",
        ),
        (answer(summary_detailed="   "), "summary.detailed is empty"),
        (answer(summary_brief="N/A"), "the summary must describe the segment"),
    ],
)
def test_wrong_shapes_and_types(data, reason):
    with pytest.raises(AnswerError, match=reason):
        validate_answer(data, RULES)


def test_extra_keys_are_ignored_and_text_is_stripped():
    data = answer(action_brief="  stir the soup \n")
    data["reasoning"] = "majority of captions"
    data["action"]["confidence"] = "high"
    annotation = validate_answer(data, RULES)
    assert annotation.action_brief == "stir the soup"
    assert annotation.to_dict() == answer()


def test_not_applicable_is_normalised_and_must_be_consistent():
    annotation = validate_answer(
        answer(action_brief="n/a", action_detailed="N/A.", action_actor=" N/A "), RULES
    )
    assert (annotation.action_brief, annotation.action_detailed, annotation.actor) == (NOT_APPLICABLE,) * 3
    assert not annotation.has_action
    with pytest.raises(AnswerError, match='both be "N/A"'):
        validate_answer(answer(action_brief="N/A"), RULES)
    # An action without a visible actor is allowed (the release has such nodes).
    assert validate_answer(answer(action_actor="N/A"), RULES).has_action
    assert validate_answer(answer(action_brief="N/A"), AnswerRules(consistent_na=False)).action_brief == "N/A"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"action_brief": "stirring the soup"}, "use the base form"),
        ({"action_brief": "take the big wooden spoon and stir the hot soup in the pot"}, "13 words"),
        ({"summary_detailed": "At 12 seconds she stirs the soup."}, "summary.detailed mentions a time"),
        ({"summary_brief": "From 0:12 the woman stirs."}, "'0:12'"),
        ({"summary_detailed": "She stirs (12.50s → 16.00s)."}, "mentions a time"),
        (
            {"summary_brief": "一个女人在搅拌汤。", "summary_detailed": "一个女人在厨房里搅拌汤。"},
            "non-Latin",
        ),
        (
            {
                "summary_brief": "Una mujer remueve la sopa con una cuchara.",
                "summary_detailed": "La mujer remueve la sopa en la olla y luego la prueba con una cuchara.",
                "action_detailed": "Remueve la sopa con la cuchara de madera.",
            },
            "does not look like English",
        ),
    ],
)
def test_form_rules(changes, reason):
    with pytest.raises(AnswerError, match=reason):
        validate_answer(answer(**changes), RULES)


def test_rules_can_be_switched_off_and_allowed_forms_pass():
    off = AnswerRules(
        max_action_brief_words=0, base_form_action=False, no_timestamps=False, english_only=False
    )
    assert validate_answer(answer(action_brief="stirring the soup", summary_brief="At 0:12 she stirs."), off)
    # Base forms ending in -ing, durations and decades are not violations.
    fine = answer(
        action_brief="string the beads", summary_detailed="She stirs for 10 seconds in 1990s style."
    )
    assert validate_answer(fine, RULES)


def test_every_answer_of_the_official_sample_passes_the_default_rules(official_sample):
    [record] = read_official_json(official_sample)
    annotated = [node.annotation for node in record.nodes if node.annotation]
    assert len(annotated) == 262
    for annotation in annotated:
        assert validate_answer(annotation.to_dict(), RULES) == annotation


def test_schema_is_the_release_shape_with_every_field_required():
    assert ANNOTATION_SCHEMA["required"] == ["summary", "action"]
    assert ANNOTATION_SCHEMA["properties"]["action"]["required"] == ["brief", "detailed", "actor"]
    assert ANNOTATION_SCHEMA["properties"]["summary"]["additionalProperties"] is False
