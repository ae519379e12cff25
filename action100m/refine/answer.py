"""The refine stage's answer: its JSON schema (the release's `gpt` field), parsing and validation.

A reply may wrap the JSON in reasoning text or code fences; `parse_answer` finds the object, checks
its shape and types, and applies the form rules (`AnswerRules`), raising `AnswerError` with a
one-line reason that the stage records and shows the model in its repair message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from action100m.dataset.schema import NOT_APPLICABLE, Annotation
from action100m.errors import Action100MError

_TEXT = {"type": "string", "minLength": 1}
SHAPE = {"summary": ("brief", "detailed"), "action": ("brief", "detailed", "actor")}


def _object(keys: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: dict(_TEXT) for key in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


# Every property required and no others: what vLLM's strict structured output and the local backend's
# (xgrammar, in backends/transformers_backend.py) both take.
ANNOTATION_SCHEMA: dict[str, Any] = {
    "title": "Action100M node annotation",
    "type": "object",
    "properties": {group: _object(keys) for group, keys in SHAPE.items()},
    "required": list(SHAPE),
    "additionalProperties": False,
}

MAX_REPLY_CHARS = 100_000  # longer replies are rejected unread: finding JSON in them costs O(n²)

# Timestamps as the prompt shows them (12.50s, 1:05, 3 → 7) or spelled out ("at 12 seconds"); a
# duration ("for 10 seconds") is allowed, a decade ("1990s") is not a timestamp.
_TIMESTAMP = re.compile(
    r"\b\d{1,2}:\d{2}(?::\d{2})?\b|\b\d+\.\d+\s?s\b|\d\s?(?:→|->)\s?\d"
    r"|\b(?:at|from|until|till|around)\s+\d+(?:\.\d+)?\s*(?:s|secs?|seconds?)\b",
    re.IGNORECASE,
)
# Verbs whose base form ends in -ing (the rule rejects "stirring", not "string").
_ING_BASE_FORMS = {
    "bring",
    "sing",
    "ring",
    "sting",
    "string",
    "swing",
    "spring",
    "cling",
    "fling",
    "sling",
    "wring",
    "king",
    "ding",
    "ping",
    "wing",
}
# Frequent function words: English ones against those of the languages a model most often drifts into.
_ENGLISH = set(
    "the a an and of to in on with is are his her their its while then as at from into by for "
    "this that it he she they them onto over up out".split()
)
_OTHER = set(
    "el los las del y con una que por para mientras luego sobre está sus muy le les des du et avec "
    "une pour sur puis dans est sont ses der die das und mit eine den dem zu auf ist sich von im "
    "dann nicht os das dos em com uma sua seu não são il gli della che poi sono".split()
)


class AnswerError(Action100MError):
    """A reply that cannot become an annotation; `reason` is one line, fit for a repair message."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass
class AnswerRules:
    """Form rules beyond the schema; each can be switched off (e.g. for a tiny random model)."""

    max_action_brief_words: int = 10  # "a short verb phrase" (release sample: mean 3.2, max 9); 0: off
    base_form_action: bool = True  # the brief action starts with a base-form verb, not an -ing form
    no_timestamps: bool = True  # no times in any text: the text is about what is seen, not when
    english_only: bool = True  # reject replies in another script or language
    consistent_na: bool = True  # a "N/A" brief action has a "N/A" detailed action, and vice versa


def extract_json(reply: str) -> Any:
    """The JSON object in `reply`: the last one that looks like an annotation, else the last one."""
    if len(reply) > MAX_REPLY_CHARS:
        raise AnswerError(f"the reply is {len(reply)} characters long, more than {MAX_REPLY_CHARS}")
    decoder = json.JSONDecoder()
    found: list[Any] = []
    position = reply.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(reply, position)
        except ValueError:
            position = reply.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = reply.find("{", end)
    if not found:
        start = " ".join(reply.split())[:80]
        raise AnswerError(f"no JSON object in the reply (it starts: {start!r})")
    shaped = [value for value in found if set(value) & set(SHAPE)]
    return (shaped or found)[-1]


def _normalise(value: str) -> str:
    value = value.strip()
    return NOT_APPLICABLE if re.fullmatch(r"n\s*/\s*a\.?", value, re.IGNORECASE) else value


def validate_answer(data: Any, rules: AnswerRules) -> Annotation:
    """The annotation in `data` (keys other than the schema's are ignored), or `AnswerError`."""
    if not isinstance(data, dict):
        raise AnswerError(f"the JSON must be an object, got {type(data).__name__}")
    fields: dict[str, str] = {}
    for group, keys in SHAPE.items():
        part = data.get(group)
        if not isinstance(part, dict):
            raise AnswerError(f"'{group}' must be an object with the keys {', '.join(keys)}")
        for key in keys:
            value = part.get(key)
            if not isinstance(value, str):
                got = "nothing" if value is None else type(value).__name__
                raise AnswerError(f"{group}.{key} must be a string, got {got}")
            if not value.strip():
                raise AnswerError(f"{group}.{key} is empty")
            fields[f"{group}.{key}"] = _normalise(value)
    problems = rule_violations(fields, rules)
    if problems:
        raise AnswerError("; ".join(problems))
    return Annotation(
        fields["summary.brief"],
        fields["summary.detailed"],
        fields["action.brief"],
        fields["action.detailed"],
        fields["action.actor"],
    )


def rule_violations(fields: dict[str, str], rules: AnswerRules) -> list[str]:
    """What in `fields` ("group.key" → text) breaks `rules`; empty when nothing does."""
    problems = [
        f'{key} is "N/A": the summary must describe the segment'
        for key in ("summary.brief", "summary.detailed")
        if fields[key] == NOT_APPLICABLE
    ]
    brief, detailed = fields["action.brief"], fields["action.detailed"]
    if rules.consistent_na and (brief == NOT_APPLICABLE) != (detailed == NOT_APPLICABLE):
        problems.append('action.brief and action.detailed must both be "N/A" or both describe the action')
    if brief != NOT_APPLICABLE:
        words = brief.split()
        if rules.max_action_brief_words and len(words) > rules.max_action_brief_words:
            problems.append(
                f"action.brief has {len(words)} words; a short verb phrase has at most "
                f"{rules.max_action_brief_words}"
            )
        first = words[0].lower().strip(",.;:!")
        if rules.base_form_action and first.endswith("ing") and first not in _ING_BASE_FORMS:
            problems.append(f"action.brief starts with '{words[0]}': use the base form of the verb")
    texts = [text for text in fields.values() if text != NOT_APPLICABLE]
    if rules.no_timestamps:
        for key, text in fields.items():
            if match := _TIMESTAMP.search(text):
                problems.append(f"{key} mentions a time ('{match.group()}'): describe what is seen, not when")
    if rules.english_only and (reason := _not_english(" ".join(texts))):
        problems.append(reason)
    return problems


def _not_english(text: str) -> str | None:
    letters = [c for c in text if c.isalpha()]
    if letters and sum(ord(c) < 0x250 for c in letters) < 0.9 * len(letters):
        return "the answer is not in English (non-Latin script); answer in English"
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(word in _ENGLISH for word in words)
    other = sum(word in _OTHER for word in words)
    if other >= 3 and other > english:
        return "the answer does not look like English; answer in English"
    return None


def parse_answer(reply: str, rules: AnswerRules) -> Annotation:
    return validate_answer(extract_json(reply), rules)
