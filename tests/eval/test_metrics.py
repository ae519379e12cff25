"""Metrics against hand-made scores, and retrieval against a brute-force sort."""

import statistics

import pytest
import torch

from action100m.eval.metrics import classification_metrics, retrieval_metrics


def test_classification_metrics_by_hand():
    # 7 classes; clips of classes 0, 0, 1, 1, 2. Class 6 is predicted once but never the target.
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],  # target 0: top-1 right
            [0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],  # target 0: 2nd
            [0.0, 0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # target 1: right
            [0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.9],  # target 1: 2nd (class 6 wins)
            [0.6, 0.5, 0.0, 0.4, 0.3, 0.2, 0.1],  # target 2: 7th, outside the top 5
        ]
    )
    targets = torch.tensor([0, 0, 1, 1, 2])
    metrics = classification_metrics(scores, targets)
    assert metrics["top1"] == pytest.approx(2 / 5)
    assert metrics["top5"] == pytest.approx(4 / 5)
    # per class present: 0 -> 1/2, 1 -> 1/2, 2 -> 0; class 6 (never a target) does not count
    assert metrics["mean_class"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_few_classes_have_no_top5_and_no_clips_no_metrics():
    metrics = classification_metrics(torch.tensor([[0.2, 0.8], [0.7, 0.3]]), torch.tensor([1, 1]))
    assert metrics == {"top1": 0.5, "top5": None, "mean_class": 0.5}
    assert classification_metrics(torch.empty(0, 3), torch.empty(0, dtype=torch.long))["top1"] is None


def _brute_force(similarity, caption_video):
    """Ranks from sorting every candidate list, a true candidate placed after the wrong ones it ties."""
    t2v, v2t = [], []
    for k, row in enumerate(similarity.tolist()):
        order = sorted(range(len(row)), key=lambda v: (-row[v], v == caption_video[k]))
        t2v.append(order.index(caption_video[k]) + 1)
    for v in range(similarity.shape[1]):
        column = similarity[:, v].tolist()
        order = sorted(range(len(column)), key=lambda k: (-column[k], caption_video[k] == v))
        v2t.append(min(order.index(k) + 1 for k, owner in enumerate(caption_video) if owner == v))
    return t2v, v2t


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
def test_retrieval_matches_brute_force(decimals):
    generator = torch.Generator().manual_seed(0)
    videos = 23
    caption_video = [v for v in range(videos) for _ in range(1 + v % 3)]  # 1-3 captions per video
    similarity = torch.randn(len(caption_video), videos, generator=generator)
    similarity[torch.arange(len(caption_video)), torch.tensor(caption_video)] += 1.0
    if decimals is not None:
        similarity = similarity.round(decimals=decimals)
    metrics = retrieval_metrics(similarity, torch.tensor(caption_video))
    t2v, v2t = _brute_force(similarity, caption_video)
    for prefix, ranks in (("t2v", t2v), ("v2t", v2t)):
        for k in (1, 5, 10):
            assert metrics[f"{prefix}_r{k}"] == pytest.approx(sum(r <= k for r in ranks) / len(ranks))
        assert metrics[f"{prefix}_median_rank"] == pytest.approx(statistics.median(ranks))
        assert metrics[f"{prefix}_mean_rank"] == pytest.approx(sum(ranks) / len(ranks))


def test_a_collapsed_encoder_retrieves_nothing():
    """All similarities equal: every true candidate ties every wrong one, so it ranks last."""
    caption_video = torch.tensor([0, 0, 1, 2, 3])
    metrics = retrieval_metrics(torch.ones(5, 4), caption_video)
    assert metrics["t2v_r1"] == 0.0 and metrics["t2v_mean_rank"] == 4.0
    assert metrics["v2t_r1"] == 0.0 and metrics["v2t_mean_rank"] == pytest.approx((4 + 5 + 5 + 5) / 4)
