"""The refine stage's prompt: our instructions (versioned), the answer schema, the video's metadata as
YAML, the global context and the node's subtree as Tree-of-Captions Markdown, within a token budget.

The budget is met by dropping whole levels of the caption trees, the deepest first (absolute depth,
the subtree's or the global context's, whichever reaches deeper), down to the node alone and the
root alone. The metadata has a budget of its own, met by dropping whole transcript lines from the
end, then whole sentences of the description from the end. Nothing is cut inside a sentence or a
JSON text. A prompt still over budget at the minimum is refused (`PromptError`), never sent cut.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from action100m.dataset.schema import Node, VideoRecord
from action100m.errors import Action100MError, ConfigError
from action100m.refine.answer import ANNOTATION_SCHEMA
from action100m.refine.markdown import subtree_markdown
from action100m.refine.tokens import TokenCounter

Message = dict[str, str]
MESSAGE_OVERHEAD = 8  # tokens a chat template adds around one message (role markers, separators)


@dataclass(frozen=True)
class PromptTexts:
    system: str  # the task; "{schema}" is replaced by the answer's JSON schema
    task: str  # closes the first user message
    refine: str  # asks for verification and revision of the previous answer
    repair: str  # follows an unusable reply; "{reason}" says what was wrong


_V1_SYSTEM = """\
You annotate one segment of an instructional video for a dataset of actions in videos. You cannot \
see the video: you read what automatic captioning models wrote about it.

You are given:
- <metadata>: the video's title, description and the speech transcript during the segment (YAML);
- <global_context>: captions of the whole video and of its main parts;
- <segment>: the segment as a tree of captions, depth first. The first heading is the whole \
segment; the headings under it are its parts, then their parts. Each heading gives start → end \
and duration in seconds; the text under it is a caption of that part, and a line starting with ">" \
describes one frame from the middle of the part.

How to read them:
- The captions come from small models and can be wrong. Keep what several captions agree on; drop \
details that only one caption states when others contradict it.
- Describe only what can be seen in this segment: motion, the steps of the procedure, people, \
objects and their appearance, text shown on screen.
- Use the metadata and the global context only to resolve ambiguity (what an object is, which task \
is being done), never as evidence of what is visible.
- Neighbouring parts may be cut from different scenes; do not link events across such cuts.
- Never mention times, timestamps or durations, the captions, the models or the transcript.

Answer with one JSON object that follows this JSON schema:
{schema}
- summary.brief: one sentence on what happens in the segment.
- summary.detailed: a dense description of everything visible in the segment, in order.
- action.brief: the main action as a short verb phrase in the base form, such as "stir the sauce" \
(not "stirring the sauce").
- action.detailed: one sentence in the imperative on how the action is done.
- action.actor: who or what performs the action, such as "the woman in the apron".
If no person or thing visibly performs an action, set action.brief, action.detailed and \
action.actor to "N/A". Write in English. You may reason first; end your reply with the JSON object."""

_V1 = PromptTexts(
    system=_V1_SYSTEM,
    task="Annotate the segment in <segment>.",
    refine=(
        "Check your previous answer against the captions and the instructions. Is every statement "
        "supported by the captions of this segment? Is anything visible and important missing? Do the "
        'action fields follow the rules ("N/A" only when no action is visible)? Are times mentioned '
        "anywhere? Then give the corrected answer as one JSON object of the same form, or the same "
        "answer again if it needs no change."
    ),
    repair="Your reply could not be used: {reason}. Answer again with one JSON object of the required form.",
)

PROMPTS: dict[str, PromptTexts] = {"v1": _V1}


class PromptError(Action100MError):
    """A node whose prompt cannot fit the budget even with the least context."""


@dataclass
class PromptConfig:
    version: str = "v1"  # a key of PROMPTS: the wording, kept so that old builds can be reproduced
    token_budget: int = 12288  # tokens of the first request (system + user message)
    metadata_token_budget: int = 1536  # of which the metadata YAML may take at most this many
    global_context_depth: int = 2  # levels of the whole video's tree shown as context (1: root only)
    subtree_max_depth: int = 6  # levels of the node's subtree shown (1: the node alone)
    tokenizer: str | None = None  # HF id or local path for exact counts; None: the local LLM's, or estimate


@dataclass
class Prompt:
    messages: list[Message]
    tokens: int
    subtree_depth: int
    context_depth: int  # 0 when the node is the root: its subtree already is the global context

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.messages, ensure_ascii=False).encode()).hexdigest()


def prompt_texts(version: str) -> PromptTexts:
    if version not in PROMPTS:
        raise ConfigError(f"refine.prompt.version '{version}': unknown; known: {', '.join(PROMPTS)}")
    return PROMPTS[version]


class PromptBuilder:
    """Builds the first request of each node; the system message is made and counted once."""

    def __init__(self, cfg: PromptConfig, count: TokenCounter):
        self.cfg = cfg
        self.count = count
        self.texts = prompt_texts(cfg.version)
        self.system = self.texts.system.replace("{schema}", json.dumps(ANNOTATION_SCHEMA, indent=1))
        self._fixed = count(self.system) + 2 * MESSAGE_OVERHEAD

    def build(self, record: VideoRecord, node: Node, children: dict[str, list[Node]]) -> Prompt:
        """The first request for `node`, trimmed to the token budget; `PromptError` if it cannot fit."""
        cfg = self.cfg
        metadata = metadata_yaml(record.metadata, node.start, node.end, self.count, cfg.metadata_token_budget)
        root = record.root

        def user(subtree_depth: int, context_depth: int) -> str:
            sections = [f"<metadata>\n{metadata}</metadata>"]
            if context_depth:
                context = subtree_markdown(record, root.node_id, context_depth, children)
                sections.append(f"<global_context>\n{context}\n</global_context>")
            subtree = subtree_markdown(record, node.node_id, subtree_depth, children)
            return "\n\n".join([*sections, f"<segment>\n{subtree}\n</segment>", self.texts.task])

        # Depths beyond a tree's height would render the same text: start from what can be shown.
        subtree_depth = max(1, min(cfg.subtree_max_depth, _height(node.node_id, children)))
        context_depth = 0
        if node.node_id != root.node_id:
            context_depth = max(1, min(cfg.global_context_depth, _height(root.node_id, children)))
        while True:
            text = user(subtree_depth, context_depth)
            tokens = self._fixed + self.count(text)
            if tokens <= cfg.token_budget:
                messages = [{"role": "system", "content": self.system}, {"role": "user", "content": text}]
                return Prompt(messages, tokens, subtree_depth, context_depth)
            # Drop the deepest level shown: the subtree's bottom level sits at node.level + depth - 1,
            # the context's at depth - 1.
            if subtree_depth > 1 and (context_depth <= 1 or node.level + subtree_depth >= context_depth):
                subtree_depth -= 1
            elif context_depth > 1:
                context_depth -= 1
            else:
                raise PromptError(
                    f"the prompt needs {tokens} tokens even with the node alone and the root as context; "
                    f"refine.prompt.token_budget is {cfg.token_budget}"
                )


def _height(node_id: str, children: dict[str, list[Node]]) -> int:
    """Levels in the subtree under `node_id`, itself included."""
    height, level = 0, [node_id]
    while level:
        height += 1
        level = [child.node_id for parent in level for child in children.get(parent, ())]
    return height


def refine_messages(first: list[Message], previous_answer: str, texts: PromptTexts) -> list[Message]:
    """A Self-Refine round: the same context, the previous answer, and the request to check it."""
    return [
        *first,
        {"role": "assistant", "content": previous_answer},
        {"role": "user", "content": texts.refine},
    ]


def repair_messages(
    conversation: list[Message], reply: str, reason: str, texts: PromptTexts
) -> list[Message]:
    """The round's conversation, the unusable reply and what was wrong with it."""
    shown = reply if len(reply) <= 4000 else reply[:4000] + " [...]"  # bounds the repair prompt's size
    return [
        *conversation,
        {"role": "assistant", "content": shown},
        {"role": "user", "content": texts.repair.replace("{reason}", reason)},
    ]


# -- metadata -------------------------------------------------------------------------------------


# libyaml's emitter where PyYAML was built with it: the pure-Python one dominated prompt building.
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_SafeDumper):  # type: ignore[misc,valid-type]
    """YAML with multi-line strings as literal blocks, as a person would write them."""


def _str(dumper: Any, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def transcript_lines(metadata: dict[str, Any], start: float, end: float) -> list[str]:
    """Transcript entries overlapping [start, end): an entry lasts until the next one starts."""
    entries = []
    for entry in metadata.get("transcript") or []:
        try:
            time, text = float(entry["time"]), " ".join(str(entry["text"]).split())
        except (KeyError, TypeError, ValueError):
            continue  # a malformed entry is left out, not guessed at
        if text:
            entries.append((time, text))
    entries.sort(key=lambda e: e[0])
    lines = []
    for i, (time, text) in enumerate(entries):
        until = entries[i + 1][0] if i + 1 < len(entries) else max(end, time) + 1.0
        if time < end and until > start:
            lines.append(f"{time:.1f}s: {text}")
    return lines


def metadata_yaml(
    metadata: dict[str, Any], start: float, end: float, count: TokenCounter, budget: int
) -> str:
    """Title, description and the transcript during [start, end) as YAML, within `budget` tokens."""
    title = str(metadata.get("title") or "").strip()
    # Trailing spaces would force YAML to quote the description instead of writing a block.
    description = "\n".join(
        line.rstrip() for line in str(metadata.get("description") or "").strip().splitlines()
    )
    ends = (
        [m.start() for m in _SENTENCE_END.finditer(description)] + [len(description)] if description else []
    )
    lines = transcript_lines(metadata, start, end)

    def dump(n_sentences: int, n_lines: int) -> str:
        data: dict[str, Any] = {}
        if title:
            data["title"] = title
        if n_sentences:
            data["description"] = description[: ends[n_sentences - 1]]
        if n_lines:
            data["transcript"] = lines[:n_lines]
        return (
            yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**6) if data else ""
        )

    # The transcript goes first, then the description: the title alone always stays.
    n_lines = _most_that_fit(len(lines), lambda n: count(dump(len(ends), n)) <= budget)
    n_sentences = len(ends)
    if n_lines == 0:
        n_sentences = _most_that_fit(len(ends), lambda n: count(dump(n, 0)) <= budget)
    return dump(n_sentences, n_lines)


def _most_that_fit(total: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [0, total] with fits(n), for fits monotone (true up to some n)."""
    if fits(total):
        return total
    low, high = 0, total  # fits(high) is false; fits(0) is taken as true
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low
