import itertools
import random

import pytest

from action100m.synth.scoring import boundary_prf, mean_iou, truth_boundaries, truth_segments


def test_exact_and_tolerated_matches():
    assert boundary_prf([1.0, 2.0], [1.0, 2.0], 0.0) == (1.0, 1.0, 1.0, 2)
    assert boundary_prf([1.5, 2.6], [1.0, 3.0], 0.5) == (1.0, 1.0, 1.0, 2)  # 0.5 away still counts
    score = boundary_prf([1.6], [1.0, 3.0], 0.5)
    assert (score.precision, score.recall, score.matched) == (0.0, 0.0, 0)


def test_matching_is_one_to_one():
    score = boundary_prf([0.9, 1.0, 1.1], [1.0], 0.5)
    assert score.precision == pytest.approx(1 / 3) and score.recall == 1.0
    assert score.f1 == pytest.approx(0.5)


def test_empty_sides():
    assert boundary_prf([], [], 0.5) == (1.0, 1.0, 1.0, 0)
    assert boundary_prf([], [1.0], 0.5) == (1.0, 0.0, 0.0, 0)
    assert boundary_prf([1.0], [], 0.5) == (0.0, 1.0, 0.0, 0)
    with pytest.raises(ValueError):
        boundary_prf([1.0], [1.0], -0.1)


def _max_matching(pred, true, tol):
    """By brute force: the most pairs any one-to-one assignment gets within `tol`."""
    for k in range(min(len(pred), len(true)), 0, -1):
        for chosen in itertools.permutations(true, k):
            for picked in itertools.combinations(pred, k):
                if all(abs(p - t) <= tol for p, t in zip(picked, chosen, strict=True)):
                    return k
    return 0


def test_greedy_sweep_finds_a_maximum_matching():
    rng = random.Random(0)
    for _ in range(300):
        pred = [round(rng.uniform(0, 5), 1) for _ in range(rng.randint(0, 4))]
        true = [round(rng.uniform(0, 5), 1) for _ in range(rng.randint(0, 4))]
        assert boundary_prf(pred, true, 0.5).matched == _max_matching(pred, true, 0.5), (pred, true)


def test_mean_iou_of_best_matching_segments():
    assert mean_iou([(0, 2), (2, 4)], [(0, 2), (2, 4)]) == 1.0
    assert mean_iou([(0, 3)], [(0, 2)]) == pytest.approx(2 / 3)
    assert mean_iou([(0, 1), (1, 4)], [(0, 2), (2, 4)]) == pytest.approx((0.5 + 2 / 3) / 2)
    assert mean_iou([], [(0, 2)]) == 0.0
    with pytest.raises(ValueError):
        mean_iou([(0, 1)], [])


def test_truth_boundaries_and_segments_per_level():
    truth = {
        "duration": 12.0,
        "cuts": [6.0],
        "steps": [{"start": 1.0, "end": 3.0}, {"start": 4.0, "end": 5.5}, {"start": 7.0, "end": 11.0}],
        "tasks": [{"start": 1.0, "end": 5.5}, {"start": 7.0, "end": 11.0}],
    }
    assert truth_boundaries(truth) == [1.0, 3.0, 4.0, 5.5, 6.0, 7.0, 11.0]
    assert truth_boundaries(truth, "task") == [1.0, 5.5, 6.0, 7.0, 11.0]
    assert truth_segments(truth, "task") == [(1.0, 5.5), (7.0, 11.0)]
    with pytest.raises(ValueError, match="unknown level"):
        truth_segments(truth, "scene")
