"""Errors of the evaluation: each message is one line naming the benchmark, file, clip or key at fault."""

from __future__ import annotations

from pathlib import Path

from action100m.errors import Action100MError


class EvalError(Action100MError):
    """Zero-shot evaluation cannot go on: bad annotations, missing videos, an unusable model."""


class BenchmarkFileError(EvalError):
    """An annotation file a reader needs is missing or does not parse."""

    def __init__(self, benchmark: str, path: Path, reason: str):
        self.benchmark, self.path, self.reason = benchmark, Path(path), reason
        super().__init__(f"{benchmark}: {path}: {reason}")
