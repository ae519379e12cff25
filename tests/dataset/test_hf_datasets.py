"""Hugging Face `datasets` reads what we write: built shards through its webdataset loader, and the
official export through its parquet loader (the README's recipe, run as written)."""

from __future__ import annotations

import json

import pytest
import torch

from action100m.dataset.official import export_official, read_official_parquet
from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import read_tar, shard_paths
from action100m.video import open_video
from tests.train.data.shardset import demo_shards

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def ours(shards) -> dict[str, dict[str, bytes]]:
    """key → {extension: bytes}, as our own reader gives them."""
    return {key: files for path in shard_paths(shards) for key, files in read_tar(path)}


def load_shards(shards, cache, decode: bool):
    rows = datasets.load_dataset(
        "webdataset",
        data_files={"train": [str(path) for path in shard_paths(shards)]},
        split="train",
        cache_dir=str(cache),
    )
    return rows if decode else rows.cast_column("mp4", datasets.Video(decode=False))


def test_built_shards_load_as_webdataset_rows_with_their_records(shards, ours, tmp_path):
    rows = load_shards(shards, tmp_path / "cache", decode=False)
    assert sorted(rows["__key__"]) == sorted(ours)
    for row in rows:
        files = ours[row["__key__"]]
        # the json column parses to the record our reader writes, field for field
        assert VideoRecord.from_dict(row["json"]).to_dict() == json.loads(files["json"])
        assert row["mp4"]["bytes"] == files["mp4"]


def test_the_video_column_decodes_through_torchcodec_to_our_frames(shards, ours, tmp_path):
    pytest.importorskip("torchcodec")
    rows = load_shards(shards, tmp_path / "cache", decode=True)
    row = rows[0]
    decoder = row["mp4"]  # a torchcodec VideoDecoder
    source = open_video(ours[row["__key__"]]["mp4"], "pyav", name=row["__key__"])
    assert decoder.metadata.num_frames == source.info.num_frames
    indices = [0, 7, source.info.num_frames // 2, source.info.num_frames - 1]
    frames = decoder.get_frames_at(indices).data  # NCHW
    assert torch.equal(frames.permute(0, 2, 3, 1), source.read_frames(indices))


def test_an_official_export_loads_as_parquet_rows(shards, tmp_path):
    release = tmp_path / "release.parquet"
    count = export_official(shards, release)
    rows = datasets.load_dataset(
        "parquet", data_files={"train": str(release)}, split="train", cache_dir=str(tmp_path / "cache")
    )
    assert rows.num_rows == count
    records = read_official_parquet(release)
    assert rows["video_uid"] == [record.video_uid for record in records]
    first = rows[0]
    assert [node["node_id"] for node in first["nodes"]] == [node.node_id for node in records[0].nodes]
    assert first["metadata"]["title"] == records[0].metadata["title"]
