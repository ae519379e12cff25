import json

import pytest
import webdataset as wds

from action100m.dataset.shards import ShardError, ShardSet, read_tar, shard_paths, write_tar
from action100m.errors import RecordError, StageError


def samples(n):
    return [(f"vid-{i}", {"json": json.dumps({"i": i}).encode(), "mp4": bytes([i]) * 10}) for i in range(n)]


def test_tar_is_deterministic_and_readable_by_webdataset(tmp_path):
    count, digest = write_tar(tmp_path / "a.tar", samples(3))
    again = write_tar(tmp_path / "b.tar", samples(3))
    assert (count, digest) == again == (3, again[1])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    read = [
        (s["__key__"], json.loads(s["json"])["i"], s["mp4"])
        for s in wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False)
    ]
    assert read == [(f"vid-{i}", i, bytes([i]) * 10) for i in range(3)]
    assert [key for key, _ in read_tar(tmp_path / "a.tar")] == ["vid-0", "vid-1", "vid-2"]


def test_unsafe_keys_are_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(RecordError, match="invalid video_uid '../x'"):
        write_tar(tmp_path / "a.tar", [("../x", {"json": b"{}"})])
    assert list(tmp_path.iterdir()) == []


def test_marker_last_and_summary(tmp_path):
    shard_set = ShardSet(tmp_path, prefix="p")
    failure = StageError("vid-9", "caption", "backend down", node_id="n1")
    shard_set.write_shard(0, samples(2), [failure], "h1", {"videos": 2, "nodes": 10, "annotated_nodes": 4})
    shard_set.write_shard(1, samples(1), [], "h1", {"videos": 1, "nodes": 3, "annotated_nodes": 1})
    shard_set.tar_path(2).write_bytes(b"half a tar")  # an interrupted write: no marker
    assert shard_set.finished() == [0, 1]
    assert shard_set.is_done(0, "h1") and not shard_set.is_done(0, "h2") and not shard_set.is_done(2, "h1")
    summary = shard_set.refresh_summary()
    assert summary == {
        "shards": 2,
        "samples": 3,
        "videos": 3,
        "nodes": 13,
        "annotated_nodes": 5,
        "failures": 1,
        "scored_videos": 0,
        "boundary_f1_sum": 0,
    }
    assert json.loads((tmp_path / "sizes.json").read_text()) == {"p-000000.tar": 2, "p-000001.tar": 1}
    [line] = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "video_uid": "vid-9",
        "node_id": "n1",
        "stage": "caption",
        "reason": "backend down",
    }
    assert [p.name for p in shard_paths(tmp_path)] == ["p-000000.tar", "p-000001.tar"]


def test_no_finished_shards(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(ShardError, match="no finished shards"):
        shard_paths(tmp_path)
    with pytest.raises(ShardError, match="no such shard folder"):
        shard_paths(tmp_path / "nope")
