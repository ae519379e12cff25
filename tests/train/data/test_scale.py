import shutil
from pathlib import Path

import pytest

from action100m.errors import ConfigError
from action100m.train.data.scale import select_scale, shard_order


def test_scales_are_nested_and_count_their_shards_videos_and_nodes(shards):
    subsets = {scale: select_scale(shards, scale) for scale in (0.25, 0.5, 1.0)}
    assert [len(s.shards) for s in subsets.values()] == [2, 4, 8]
    assert subsets[0.25].shards == subsets[0.5].shards[:2] == subsets[1.0].shards[:2]
    assert subsets[0.5].shards == subsets[1.0].shards[:4]
    assert all(s.total_shards == 8 and s.root == shards for s in subsets.values())
    assert subsets[1.0].videos == 8 and subsets[0.25].videos == 2
    assert 0 < subsets[0.25].nodes < subsets[0.5].nodes < subsets[1.0].nodes
    assert select_scale(shards / "shards", 0.5) == subsets[0.5]  # OUT or OUT/shards


def test_the_order_is_fixed_by_shard_names_not_by_the_set():
    paths = [Path("x") / f"action100m-{i:06d}.tar" for i in range(10)]
    order = shard_order(paths)
    assert order != paths  # shuffled
    assert [p for p in shard_order(paths[:7]) if p in order] == [p for p in order if p in paths[:7]]


def test_bad_scales_and_missing_shards_are_clear_errors(shards, tmp_path):
    with pytest.raises(
        ConfigError, match=r"data.scale=0.1 of 8 shards selects no shard \(the smallest scale here is 0.125\)"
    ):
        select_scale(shards, 0.1)
    for scale in (0, -0.5, 1.5):
        with pytest.raises(ConfigError, match=r"data.scale: .* is not in \(0, 1\]"):
            select_scale(shards, scale)
    with pytest.raises(ConfigError, match="data.shards: .*nowhere: no such shard folder"):
        select_scale(tmp_path / "nowhere", 1.0)
    (tmp_path / "empty" / "shards").mkdir(parents=True)
    shutil.copy(
        next((shards / "shards").glob("*.tar")), tmp_path / "empty" / "shards"
    )  # a tar without marker
    with pytest.raises(ConfigError, match="no finished shards"):
        select_scale(tmp_path / "empty", 1.0)
