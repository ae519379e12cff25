"""Constrained JSON decoding for local transformers LLMs: every reply parses and has the schema's shape.

It covers the schemas the project sends: objects whose properties are all required strings or such
objects (`additionalProperties: false`), which is the refine stage's answer in full. Such a schema is
a fixed skeleton, `{"summary": {"brief": "…", "detailed": "…"}, …}` in property order, with free
string slots: a regular language. A character automaton over it, run on each token's text, gives
the tokens allowed in each state (computed once per state, then cached). A string slot must start
with a visible character, so no field comes out blank. Each allowed token also carries the fewest
tokens needed to finish the skeleton from where it leads (one character per token at worst), and a
token is allowed only while that still fits in `max_new_tokens`: the open string is closed in time
and no reply is cut off inside the JSON.

Models that answer in the harmony format (GPT-OSS) reason before the answer, which a constraint
from the first token would forbid; they stay unconstrained here (validate and retry), as do
tokenizers that cannot spell the skeleton one character per token (word-level toy tokenizers).
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

from action100m.backends.base import LLM, BackendError, Message
from action100m.backends.transformers_backend import TransformersLLM

log = logging.getLogger(__name__)
ENGINE = "json-skeleton-v1"
_ACCEPT = ("accept",)
_EMPTY, _BODY, _ESCAPE = 0, 1, 2  # string slot states; 3..6: \u with 4..1 hex digits to go
_ESCAPED = set('"\\/bfnrt')
_UNREACHABLE = 1 << 30


class UnsupportedSchema(ValueError):
    pass


def skeleton(schema: dict[str, Any]) -> list[str]:
    """The literal pieces around the string slots: [L0, L1, ..., Ln] for n slots."""
    pieces = [""]

    def walk(node: dict[str, Any]) -> None:
        kind = node.get("type")
        if kind == "string":
            if node.get("minLength", 1) > 1 or set(node) - {"type", "minLength", "title", "description"}:
                raise UnsupportedSchema(f"string constraints {sorted(node)} beyond minLength ≤ 1")
            pieces[-1] += '"'
            pieces.append('"')
        elif kind == "object":
            properties = node.get("properties") or {}
            if not properties or set(node.get("required", ())) != set(properties):
                raise UnsupportedSchema("an object whose properties are not all required")
            if node.get("additionalProperties", True) is not False:
                raise UnsupportedSchema("an object without additionalProperties: false")
            pieces[-1] += "{"
            for i, (key, value) in enumerate(properties.items()):
                pieces[-1] += (", " if i else "") + f'"{key}": '
                walk(value)
            pieces[-1] += "}"
        else:
            raise UnsupportedSchema(f"type {kind!r}")

    walk(schema)
    return pieces


@dataclass(frozen=True)
class _Automaton:
    """States: ("lit", k, i) inside literal k; ("slot", k, sub) inside the string after literal k."""

    literals: tuple[str, ...]

    def start(self) -> tuple:
        return ("lit", 0, 0)

    def _after_literal_char(self, k: int, i: int) -> tuple:
        if i < len(self.literals[k]):
            return ("lit", k, i)
        return _ACCEPT if k == len(self.literals) - 1 else ("slot", k, _EMPTY)

    def step(self, state: tuple, ch: str) -> tuple | None:
        if state[0] == "lit":
            _, k, i = state
            return self._after_literal_char(k, i + 1) if self.literals[k][i] == ch else None
        if state[0] != "slot":
            return None
        _, k, sub = state
        if sub in (_EMPTY, _BODY):
            if ch == '"':
                return self._after_literal_char(k + 1, 1) if sub == _BODY else None
            if ord(ch) < 0x20 or (sub == _EMPTY and (ch.isspace() or ch == "\\")):
                return None
            return ("slot", k, _ESCAPE if ch == "\\" else _BODY)
        if sub == _ESCAPE:
            return ("slot", k, _BODY) if ch in _ESCAPED else ("slot", k, 3) if ch == "u" else None
        if ch not in string.hexdigits:
            return None
        return ("slot", k, sub + 1) if sub < 6 else ("slot", k, _BODY)

    def walk(self, state: tuple, text: str) -> tuple | None:
        for ch in text:
            state = self.step(state, ch)  # type: ignore[assignment]
            if state is None:
                return None
        return state

    def remaining(self, state: tuple) -> int:
        """The fewest characters from `state` to the end of the skeleton (a slot takes at least one)."""
        if state == _ACCEPT:
            return 0
        _, k, position = state
        tail = sum(len(lit) for lit in self.literals[k + 1 :]) + len(self.literals) - 1 - k
        if state[0] == "lit":
            return len(self.literals[k]) - position + tail
        # In a slot: its closing quote (the next literal's first character) is part of the tail.
        return tail - 1 + {_EMPTY: 1, _BODY: 0, _ESCAPE: 1}.get(position, 7 - position)


class SchemaIndex:
    """Per-state tables over a tokenizer's vocabulary for one schema."""

    def __init__(self, schema: dict[str, Any], tokenizer: Any, eos_ids: list[int], vocab_size: int):
        self.automaton = _Automaton(tuple(skeleton(schema)))
        self.texts = token_texts(tokenizer)[:vocab_size]
        self.eos_ids = eos_ids
        self.vocab_size = vocab_size
        singles = {text for text in self.texts if text is not None and len(text) == 1}
        missing = sorted(set("".join(self.automaton.literals)) - singles)
        if missing or not singles & set(string.ascii_letters):
            raise UnsupportedSchema(f"the tokenizer has no single-character token for {missing or 'letters'}")
        # Tokens that stay inside a string body, and which of them may open one.
        plain = [t is not None and '"' not in t and "\\" not in t and all(ord(c) >= 0x20 for c in t)
                 for t in self.texts]  # fmt: skip
        opens = [p and not t[0].isspace() for p, t in zip(plain, self.texts, strict=True)]  # type: ignore[index]
        padding = [False] * (vocab_size - len(plain))  # output rows the tokenizer has no token for
        self._plain, self._opens = torch.tensor(plain + padding), torch.tensor(opens + padding)
        self._others = [i for i, (p, t) in enumerate(zip(plain, self.texts, strict=True)) if not p and t]
        self._by_first: dict[str, list[int]] = {}
        for i, text in enumerate(self.texts):
            if text:
                self._by_first.setdefault(text[0], []).append(i)
        self._tables: dict[tuple, torch.Tensor] = {}

    def need(self, state: tuple, device: torch.device) -> torch.Tensor:
        """For each token: the fewest tokens still needed after it, or a huge number if not allowed."""
        key = (state, str(device))
        if key not in self._tables:
            self._tables[key] = self._build(state).to(device)
        return self._tables[key]

    def _build(self, state: tuple) -> torch.Tensor:
        need = torch.full((self.vocab_size,), _UNREACHABLE, dtype=torch.long)
        if state == _ACCEPT:
            need[self.eos_ids] = 0
            return need
        automaton = self.automaton
        if state[0] == "slot" and state[2] in (_EMPTY, _BODY):
            need[self._opens if state[2] == _EMPTY else self._plain] = automaton.remaining(
                state[:2] + (_BODY,)
            )
            candidates = self._others
        else:
            if state[0] == "lit":
                firsts = {automaton.literals[state[1]][state[2]]}
            else:
                firsts = _ESCAPED | {"u"} if state[2] == _ESCAPE else set(string.hexdigits)
            candidates = [i for ch in firsts for i in self._by_first.get(ch, ())]
        for i in candidates:
            after = automaton.walk(state, self.texts[i])  # type: ignore[arg-type]
            if after is not None:
                need[i] = automaton.remaining(after)
        return need


def token_texts(tokenizer: Any) -> list[str | None]:
    """Each token's text as it reads inside a reply (None: never to be generated).

    Decoded after an anchor token, so that tokenizers which drop a leading space at the start of a
    text (SentencePiece) still show it; special tokens and pieces of a multi-byte character are None.
    """
    anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
    prefix = tokenizer.decode(anchor)
    special = set(tokenizer.all_special_ids)
    decoded = tokenizer.batch_decode(
        [anchor + [i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False
    )
    texts: list[str | None] = []
    for i, text in enumerate(decoded):
        ok = i not in special and text.startswith(prefix) and "\ufffd" not in text and len(text) > len(prefix)
        texts.append(text[len(prefix) :] if ok else None)
    return texts


class SchemaProcessor(LogitsProcessor):
    """Masks the logits of one `generate` call so that each row spells the schema's skeleton."""

    def __init__(self, index: SchemaIndex, prompt_length: int, max_new_tokens: int):
        self.index = index
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.states: list[tuple | None] = []  # None: the row has finished (or left the automaton)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_length
        if generated == 0:
            self.states = [self.index.automaton.start()] * input_ids.shape[0]
        else:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                state = self.states[row]
                if state is not None:
                    text = self.index.texts[token] if token < len(self.index.texts) else None
                    self.states[row] = (
                        None if state == _ACCEPT or text is None else self.index.automaton.walk(state, text)
                    )
        left = self.max_new_tokens - generated - 1  # tokens that may follow this one
        allowed = torch.ones_like(scores, dtype=torch.bool)
        for row, state in enumerate(self.states):
            if state is not None:
                allowed[row] = self.index.need(state, scores.device) <= left
        masked = scores.masked_fill(~allowed, float("-inf"))
        # Allowed tokens that an earlier processor ruled out (a suppressed end-of-sequence) stay possible.
        stuck = torch.isinf(masked).all(dim=1, keepdim=True) & allowed.any(dim=1, keepdim=True)
        return torch.where(stuck & allowed, torch.zeros_like(masked), masked)


class ConstrainedTransformersLLM(TransformersLLM):
    """A local LLM whose replies follow the JSON schema passed to `complete` (see the module docs)."""

    enforces_json_schema = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self._harmony:
            raise self.error("harmony-format models reason before answering: constrained decoding is off")
        self._indexes: dict[str, SchemaIndex | None] = {}
        self._active: SchemaIndex | None = None

    @classmethod
    def wrap(cls, llm: TransformersLLM) -> ConstrainedTransformersLLM:
        """The same model, tokenizer and settings (shared, not copied), decoding under schemas."""
        return cls(llm.model, llm.processor, llm.model_id, llm.generation, llm.settings)

    def index(self, schema: dict[str, Any]) -> SchemaIndex | None:
        """The tables for `schema`, built on first use; None when it cannot be enforced."""
        key = repr(schema)
        if key not in self._indexes:
            try:
                self._indexes[key] = self._build_index(schema)
            except UnsupportedSchema as err:
                log.warning("%s: schema not enforced (%s); validate the replies", self.model_id, err)
                self._indexes[key] = None
        return self._indexes[key]

    def _build_index(self, schema: dict[str, Any]) -> SchemaIndex:
        eos = self.model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [self.tokenizer.eos_token_id])
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        index = SchemaIndex(schema, self.tokenizer, eos_ids, vocab_size)
        shortest = index.automaton.remaining(index.automaton.start())
        if self.generation.max_new_tokens < shortest:
            raise UnsupportedSchema(
                f"max_new_tokens {self.generation.max_new_tokens} < the {shortest} needed"
            )
        return index

    def complete(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None = None
    ) -> list[str | BackendError]:
        self._active = self.index(json_schema) if json_schema is not None else None
        try:
            return super().complete(conversations, json_schema)
        finally:
            self._active = None

    def _logits_processors(self, prompt_length: int) -> list[Any]:
        if self._active is None:
            return []
        return [SchemaProcessor(self._active, prompt_length, self.generation.max_new_tokens)]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "constrained_decoding": ENGINE}


def constrain(llm: LLM, schema: dict[str, Any]) -> LLM:
    """`llm` decoding under `schema` when it is a local transformers LLM that can; else `llm` itself."""
    if not isinstance(llm, TransformersLLM) or llm.enforces_json_schema:
        return llm
    try:
        constrained = ConstrainedTransformersLLM.wrap(llm)
    except BackendError as err:
        log.info("%s: %s; replies are validated and retried", llm.model_id, err.reason)
        return llm
    return constrained if constrained.index(schema) is not None else llm
