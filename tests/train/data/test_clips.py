import json

import numpy as np
import torch

from action100m.train.data.clips import build_clip_cache, clip_cache_paths
from action100m.train.data.fields import FieldMix
from action100m.train.data.scale import select_scale
from action100m.train.data.stream import NodeStream, StreamLoader
from tests.train.data.test_stream import FIELDS, config


def _stream(subset, cfg, clips=None):
    return NodeStream(
        [str(p) for p in subset.shards], cfg, FieldMix(FIELDS), None, 0, cfg.epoch_batches, 0, clips=clips
    )


def test_cached_clips_are_the_clips_the_decoder_gives_and_the_batches_are_the_same(shards, tmp_path):
    cfg = config(shards, num_workers=0, max_duration=9.0, cache_dir=str(tmp_path))
    subset = select_scale(shards, 0.5)
    cache = build_clip_cache(subset.shards, subset.sha256s, tmp_path, cfg)
    decoded = list(StreamLoader(_stream(subset, cfg), lambda: 0, 0))
    cached = list(StreamLoader(_stream(subset, cfg, cache), lambda: 0, 0))
    assert [b["texts"] for b in cached] == [b["texts"] for b in decoded]
    assert all(torch.equal(a["clips"], b["clips"]) for a, b in zip(cached, decoded, strict=True))
    # every node the filters keep is cached, once, in row order of its key list
    for shard, sha in zip(subset.shards, subset.sha256s, strict=True):
        array_path, keys_path = clip_cache_paths(tmp_path, shard, sha, cfg)
        keys = json.loads(keys_path.read_text())
        array = np.load(array_path)
        assert (
            array.dtype == np.uint8
            and array.shape == (len(keys), 8, 3, 32, 32)
            and len(set(keys)) == len(keys)
        )


def test_a_cached_shard_is_not_decoded_again_and_a_node_it_lacks_is_decoded(shards, tmp_path, monkeypatch):
    cfg = config(shards, num_workers=0, max_duration=9.0)
    subset = select_scale(shards, 0.25)
    cache = build_clip_cache(subset.shards, subset.sha256s, tmp_path, cfg)
    stamps = [
        clip_cache_paths(tmp_path, s, h, cfg)[0].stat().st_mtime_ns
        for s, h in zip(subset.shards, subset.sha256s, strict=True)
    ]
    again = build_clip_cache(subset.shards, subset.sha256s, tmp_path, cfg)
    assert stamps == [
        clip_cache_paths(tmp_path, s, h, cfg)[0].stat().st_mtime_ns
        for s, h in zip(subset.shards, subset.sha256s, strict=True)
    ]
    # another node filter is another cache; a node the cache does not hold is decoded from its video
    wider = config(shards, num_workers=0, max_duration=None)
    assert (
        clip_cache_paths(tmp_path, subset.shards[0], subset.sha256s[0], wider)[1]
        != clip_cache_paths(tmp_path, subset.shards[0], subset.sha256s[0], cfg)[1]
    )
    batches = list(StreamLoader(_stream(subset, wider, again), lambda: 0, 0))
    reference = list(StreamLoader(_stream(subset, wider), lambda: 0, 0))
    assert all(torch.equal(a["clips"], b["clips"]) for a, b in zip(batches, reference, strict=True))
    assert cache.get(str(subset.shards[0]), "no-such-video/0") is None
