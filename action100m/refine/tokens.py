"""Token counts for the refine stage's prompt budget: a real tokenizer when one is at hand, else an estimate.

The estimate follows how byte-pair tokenizers of large vocabularies (o200k, Llama 3) cut English: a
word of up to 7 ASCII letters is one token and longer words one more per 6 letters, digits go in
groups of 3, every other non-space character (punctuation, any non-ASCII letter) is a token of its
own, and spaces ride with the next token. It needs no download, so the budget holds offline;
configure a tokenizer for exact counts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from action100m.errors import ConfigError

ESTIMATE = "estimate-v1"
_WORDS, _LONG_WORDS = re.compile(r"[A-Za-z]+"), re.compile(r"[A-Za-z]{8,}")
_NUMBERS, _LONG_NUMBERS = re.compile(r"[0-9]+"), re.compile(r"[0-9]{4,}")
_OTHERS = re.compile(r"[^\sA-Za-z0-9]")  # punctuation, symbols, and each non-ASCII character


def estimate_tokens(text: str) -> int:
    # Counted with regular expressions only: a prompt is counted several times while it is trimmed.
    count = len(_WORDS.findall(text)) + len(_NUMBERS.findall(text)) + len(_OTHERS.findall(text))
    count += sum((len(word) - 2) // 6 for word in _LONG_WORDS.findall(text))
    return count + sum((len(number) - 1) // 3 for number in _LONG_NUMBERS.findall(text))


class TokenCounter:
    """`counter(text)` → tokens; `name` says which counting was used (it goes into the config hash)."""

    def __init__(self, tokenizer: Any | None = None, name: str = ESTIMATE):
        self.tokenizer = tokenizer
        self.name = name

    @classmethod
    def load(cls, tokenizer: str | None, llm: Any = None) -> TokenCounter:
        """A named tokenizer (HF id or local path); else the local LLM's own; else the estimate."""
        if tokenizer:
            try:
                return cls(_pretrained(tokenizer), f"tokenizer:{tokenizer}")
            except (OSError, ValueError) as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise ConfigError(
                    f"refine.prompt.tokenizer '{tokenizer}': cannot load ({reason}); "
                    "set it to null to count tokens by estimate"
                ) from err
        own = getattr(llm, "tokenizer", None)
        if own is not None:
            return cls(own, f"tokenizer:{llm.model_id}")
        return cls()

    def __call__(self, text: str) -> int:
        if self.tokenizer is None:
            return estimate_tokens(text)
        return len(self.tokenizer.encode(text, add_special_tokens=False))


@lru_cache(maxsize=4)
def _pretrained(name: str) -> Any:
    """A named tokenizer, loaded once per process: the build loads it at start (before any video, so a
    missing one fails there) and every batch's refine reuses it. Encoding does not change it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)
