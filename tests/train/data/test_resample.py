import random
from collections import Counter

import pytest

import action100m.train.data.resample as resample
from action100m.errors import ConfigError
from action100m.train.data.config import ResampleConfig
from action100m.train.data.resample import dedupe_key, resampling_rates

BRIEFS = ["speak to camera"] * 60 + ["Speak  to camera"] * 20 + ["stir mixture"] * 15 + ["cut the onion"] * 5
COUNTS = Counter(dedupe_key(brief) for brief in BRIEFS)  # what the data plan counts


def test_clusters_are_drawn_uniformly_and_the_table_is_cached(tmp_path, monkeypatch):
    cfg = ResampleConfig(enabled=True, clusters=3)
    rates = resampling_rates(COUNTS, cfg, tmp_path)
    assert set(rates) == {"speak to camera", "stir mixture", "cut the onion"}  # deduplicated
    # every cluster (here: every text) gets the same expected share of the draws, all draws in all
    shares = {text: rates[text] * COUNTS[text] for text in rates}
    assert all(share == pytest.approx(len(BRIEFS) / 3) for share in shares.values())
    assert list((tmp_path / "resample").glob("rates-*.json"))

    monkeypatch.setattr(resample, "cluster", lambda *a: pytest.fail("the cached table was not used"))
    assert resampling_rates(COUNTS, cfg, tmp_path) == rates


def test_similar_texts_share_a_cluster():
    cfg = ResampleConfig(enabled=True, clusters=2, seed=0)
    texts = ["speak to camera", "talk to the camera", "speak to the camera", "cut the onion"]
    labels = resample.cluster(texts, cfg)
    assert labels[0] == labels[1] == labels[2] != labels[3]


def test_bad_resampling_settings(tmp_path):
    with pytest.raises(ConfigError, match="clusters must be at least 1"):
        resampling_rates(COUNTS, ResampleConfig(clusters=0), tmp_path)
    with pytest.raises(ConfigError, match="no node of the chosen shards has a brief action"):
        resampling_rates({}, ResampleConfig(), tmp_path)


def test_the_stream_repeats_a_node_by_its_rate_on_average():
    from action100m.dataset.schema import Annotation, Node
    from action100m.train.data.stream import NodeStream

    stream = NodeStream([], None, None, {"stir mixture": 2.5}, 0, 1, 0)
    node = Node("n", None, 0, 0.0, 1.0, annotation=Annotation("", "", "Stir  mixture", "", ""))
    rng = random.Random(0)
    copies = [stream._copies(node, {}, rng) for _ in range(4000)]
    assert set(copies) == {2, 3} and sum(copies) / len(copies) == pytest.approx(2.5, abs=0.05)
    unclustered = Node("m", None, 0, 0.0, 1.0, action_label="stir")
    assert stream._copies(unclustered, {}, rng) == 1
