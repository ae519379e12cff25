"""Text fields of a node, and the weighted mix that picks one text per training sample.

brief action (the default, the paper's best single source), brief caption, detailed action, detailed
caption (the LLM annotation); segment caption and action label (the captioner's, the paper's "direct
pseudo-label"); frame caption; the ASR narration spoken during the node.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from action100m.dataset.schema import NOT_APPLICABLE, Node
from action100m.errors import ConfigError

TextOf = Callable[[Node, Mapping], "str | None"]


def _transcript(node: Node, metadata: Mapping) -> str | None:
    """The transcript lines whose time falls in [start, end), joined."""
    lines = []
    for line in metadata.get("transcript") or ():
        try:
            time = float(line["time"])
        except (KeyError, TypeError, ValueError):
            continue
        if node.start <= time < node.end and isinstance(line.get("text"), str):
            lines.append(line["text"].strip())
    return " ".join(lines)


TEXT_FIELDS: dict[str, TextOf] = {
    "action_brief": lambda n, m: n.annotation.action_brief if n.annotation else None,
    "summary_brief": lambda n, m: n.annotation.summary_brief if n.annotation else None,
    "action_detailed": lambda n, m: n.annotation.action_detailed if n.annotation else None,
    "summary_detailed": lambda n, m: n.annotation.summary_detailed if n.annotation else None,
    "segment_caption": lambda n, m: n.segment_caption,
    "action_label": lambda n, m: n.action_label,
    "frame_caption": lambda n, m: n.frame_caption,
    "asr": _transcript,
}


def usable(text: str | None) -> bool:
    return isinstance(text, str) and bool(text.strip()) and text.strip() != NOT_APPLICABLE


def node_texts(node: Node, metadata: Mapping, fields: list[str]) -> dict[str, str]:
    """field → text, for the `fields` this node has a usable text in."""
    texts = {}
    for name in fields:
        text = TEXT_FIELDS[name](node, metadata)
        if usable(text):
            texts[name] = text.strip()
    return texts


class FieldMix:
    """The configured field weights; `choose` draws one of a node's available texts by weight."""

    def __init__(self, weights: Mapping[str, float]):
        unknown = sorted(set(weights) - set(TEXT_FIELDS))
        if unknown:
            raise ConfigError(
                f"data.text_fields: unknown field {unknown[0]!r} (one of {', '.join(TEXT_FIELDS)})"
            )
        self.weights = {name: float(w) for name, w in weights.items() if float(w) > 0}
        if not self.weights or any(float(w) < 0 for w in weights.values()):
            raise ConfigError(
                "data.text_fields: give at least one field a positive weight, and none a negative one"
            )
        self.fields = list(self.weights)

    def choose(self, texts: Mapping[str, str], rng: random.Random) -> str | None:
        """A text drawn by weight among the available ones; None when the node has none."""
        names = [name for name in self.fields if name in texts]
        if not names:
            return None
        if len(names) == 1:
            return texts[names[0]]
        return texts[rng.choices(names, weights=[self.weights[n] for n in names])[0]]


def keeps(node: Node, min_duration: float, max_duration: float | None, annotated_only: bool) -> bool:
    """The node filters: duration in [min, max] seconds, and annotated when asked."""
    duration = node.end - node.start
    if duration < min_duration or (max_duration is not None and duration > max_duration):
        return False
    return node.annotation is not None or not annotated_only
