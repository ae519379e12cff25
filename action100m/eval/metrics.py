"""Classification metrics (torchmetrics) and retrieval metrics, as fractions in [0, 1]."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


def classification_metrics(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float | None]:
    """top1, top5 (None with 5 classes or fewer: it would be trivially 1) and mean_class: the mean over
    the classes that occur in `targets` of their top-1 recall.

    Mean-class accuracy masks torchmetrics' per-class ("none") result rather than using its "macro"
    average, which also averages in classes that are predicted but never the target (as zeros): EPIC
    verbs have 97 classes of which 78 occur, so "macro" would depend on what the model predicts wrongly.
    """
    num_classes = scores.shape[1]
    if targets.numel() == 0:
        return {"top1": None, "top5": None, "mean_class": None}
    scores, targets = scores.float(), targets.long()
    top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")(scores, targets)
    top5 = (
        MulticlassAccuracy(num_classes, top_k=5, average="micro")(scores, targets)
        if num_classes > 5
        else None
    )
    per_class = MulticlassAccuracy(num_classes, top_k=1, average="none")(scores, targets)
    present = torch.bincount(targets, minlength=num_classes) > 0
    return {
        "top1": round(float(top1), 6),
        "top5": None if top5 is None else round(float(top5), 6),
        "mean_class": round(float(per_class[present].mean()), 6),
    }


def _summary(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    ranks = ranks.float()
    out = {f"{prefix}_r{k}": float((ranks <= k).float().mean()) for k in (1, 5, 10)}
    out[f"{prefix}_median_rank"] = float(ranks.quantile(0.5))  # the middle two averaged, as numpy
    out[f"{prefix}_mean_rank"] = float(ranks.mean())
    return out


def retrieval_metrics(similarity: torch.Tensor, caption_video: torch.Tensor) -> dict[str, float]:
    """R@1/5/10, median and mean rank (1 = best) for text-to-video (`t2v`, each caption finds its video
    among all videos) and video-to-text (`v2t`, each video's best-ranked caption among all captions).

    `similarity` is (captions, videos); caption k describes video caption_video[k]. A rank counts the
    wrong candidates scored at least as high as the true one, so a tie counts against the query: an
    encoder that scores everything alike ranks last, not first.
    """
    caption_video = caption_video.long()
    captions = torch.arange(similarity.shape[0])
    true_score = similarity[captions, caption_video]
    t2v = (similarity >= true_score[:, None]).sum(dim=1)  # the true video itself is one of them
    # A video is found by its best-scored caption; its other captions are not competitors.
    videos = similarity.shape[1]
    best = torch.full((videos,), float("-inf"), dtype=true_score.dtype)
    best = best.scatter_reduce(0, caption_video, true_score, reduce="amax")
    wrong = caption_video[:, None] != torch.arange(videos)[None, :]  # (captions, videos)
    v2t = ((similarity >= best[None, :]) & wrong).sum(dim=0) + 1
    v2t[best == float("-inf")] = similarity.shape[0] + 1  # a video without captions is never found
    return {**_summary(t2v, "t2v"), **_summary(v2t, "v2t")}
