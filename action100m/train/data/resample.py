"""Semantic resampling (Action100M §5.4): brief actions are embedded, deduplicated and clustered with
k-means, and clusters are drawn uniformly with replacement, which flattens the long tail ("speak to
camera" no longer dominates).

A stream cannot draw a cluster and then a member, so the same distribution is reached by repetition:
among N nodes in K clusters, drawing N times with clusters uniform takes a node of a c-node cluster
N / (K·c) times on average, and the stream emits each node that many times (the integer part, plus
one more with the fractional part's probability). Nodes without a brief action keep rate 1.
The table text → rate is computed once per set of texts and cached next to the shards.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from action100m.errors import ConfigError
from action100m.train.data.config import ResampleConfig
from action100m.utils.atomic import write_json_atomic


def dedupe_key(text: str) -> str:
    return " ".join(text.lower().split())


def _table_path(counts: Mapping[str, int], cfg: ResampleConfig, cache: Path) -> Path:
    digest = hashlib.sha256(json.dumps([cfg.model, cfg.clusters, cfg.seed], sort_keys=True).encode())
    for text in sorted(counts):
        digest.update(f"{text}\x00{counts[text]}\x00".encode())
    return cache / "resample" / f"rates-{digest.hexdigest()[:16]}.json"


def cluster(texts: list[str], cfg: ResampleConfig) -> np.ndarray:
    """A k-means cluster id per text, from normalised sentence embeddings."""
    from sentence_transformers import SentenceTransformer
    from sklearn.cluster import MiniBatchKMeans

    from action100m.models.hub import load_or_fail  # action100m.models imports torch; planning does not

    encoder = load_or_fail(
        lambda path: SentenceTransformer(path, device="cpu"), cfg.model, "data.resample.model"
    )
    embeddings = encoder.encode(
        texts, batch_size=cfg.batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    k = min(cfg.clusters, len(texts))
    return MiniBatchKMeans(n_clusters=k, random_state=cfg.seed, n_init=3).fit_predict(embeddings)


def resampling_rates(counts: Mapping[str, int], cfg: ResampleConfig, cache: Path) -> dict[str, float]:
    """Deduplicated brief action → how many times a node with it is emitted on average, from the
    number of training nodes with each deduplicated brief action (the data plan's `brief_counts`)."""
    if cfg.clusters < 1:
        raise ConfigError(f"data.resample.clusters must be at least 1, got {cfg.clusters}")
    if not counts:
        raise ConfigError("data.resample: no node of the chosen shards has a brief action to cluster")
    target = _table_path(counts, cfg, cache)
    if target.is_file():
        return json.loads(target.read_text(encoding="utf-8"))
    texts = sorted(counts)
    labels = cluster(texts, cfg)
    nodes_in = Counter()
    for text, label in zip(texts, labels, strict=True):
        nodes_in[label] += counts[text]
    total = sum(counts.values())
    rates = {
        text: total / (len(nodes_in) * nodes_in[label]) for text, label in zip(texts, labels, strict=True)
    }
    write_json_atomic(target, rates, indent=None)
    return rates
