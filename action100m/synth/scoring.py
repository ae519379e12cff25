"""Scoring a temporal segmentation against SynthActions ground truth: boundary precision/recall/F1 at a
tolerance, and mean IoU of best-matching segments, at the step or the task level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

LEVELS = ("step", "task")


class BoundaryScore(NamedTuple):
    precision: float
    recall: float
    f1: float
    matched: int


def boundary_prf(predicted: Sequence[float], truth: Sequence[float], tolerance: float) -> BoundaryScore:
    """Match predicted to true boundaries one-to-one, each pair at most `tolerance` seconds apart.

    Both sorted, a greedy sweep finds a maximum matching (the compatibility graph of points on a line
    within a fixed distance is an interval graph). With nothing predicted precision is 1, with nothing
    to find recall is 1: an empty prediction of an empty truth scores 1 throughout.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    pred, true = sorted(predicted), sorted(truth)
    i = j = matched = 0
    while i < len(pred) and j < len(true):
        if abs(pred[i] - true[j]) <= tolerance:
            matched, i, j = matched + 1, i + 1, j + 1
        elif pred[i] < true[j]:
            i += 1
        else:
            j += 1
    precision = matched / len(pred) if pred else 1.0
    recall = matched / len(true) if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BoundaryScore(precision, recall, f1, matched)


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    intersection = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - intersection
    return intersection / union if union > 0 else 0.0


def mean_iou(predicted: Sequence[tuple[float, float]], truth: Sequence[tuple[float, float]]) -> float:
    """For each true (start, end) segment the best IoU with any predicted one, averaged over the truth."""
    if not truth:
        raise ValueError("no ground-truth segments to score against")
    return sum(max((_iou(t, p) for p in predicted), default=0.0) for t in truth) / len(truth)


def truth_segments(truth: dict[str, Any], level: str = "step") -> list[tuple[float, float]]:
    """The (start, end) of every step or task in a ground-truth line."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose one of {LEVELS}")
    return [(item["start"], item["end"]) for item in truth[f"{level}s"]]


def truth_boundaries(truth: dict[str, Any], level: str = "step") -> list[float]:
    """Where something starts or stops at that level, and the cuts, inside (0, duration), sorted.

    Steps are separated by still pauses, so each step gives two boundaries (motion starts, stops).
    """
    times = {t for segment in truth_segments(truth, level) for t in segment} | set(truth["cuts"])
    return sorted(t for t in times if 0.0 < t < truth["duration"])
