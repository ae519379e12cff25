import itertools
import json
import os
import random
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from action100m.config import VideoBackend
from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import read_tar, write_tar
from action100m.train.data.config import DataConfig
from action100m.train.data.fields import FieldMix, node_texts
from action100m.train.data.scale import select_scale
from action100m.train.data.stream import DataError, NodeSample, NodeStream, StreamLoader
from action100m.video import BACKENDS, VideoDecodeError, open_video
from tests.video.kinds import KINDS, write_kind

FIELDS = {"action_brief": 1.0, "action_label": 1.0}


def config(shards, **overrides):
    settings = dict(
        shards=str(shards),
        text_fields=FIELDS,
        batch_size=4,
        num_workers=2,
        epoch_batches=5,
        shuffle_buffer=50,
    )
    return DataConfig(**{**settings, **overrides})


def stream(paths, cfg, rank=0, seed=0):
    return NodeStream(
        [str(p) for p in paths], cfg, FieldMix(cfg.text_fields), None, rank, cfg.epoch_batches, seed
    )


def epoch(dataset, start, workers):
    return list(StreamLoader(dataset, lambda: start, workers))


def test_a_rank_gets_exactly_its_batches_the_same_each_time_and_resumes_mid_epoch(shards):
    cfg = config(shards)
    paths = select_scale(shards, 1.0).shards
    first = epoch(stream(paths, cfg), 0, workers=2)
    assert len(first) == 5
    for batch in first:
        assert batch["clips"].shape == (4, 8, 3, 32, 32) and batch["clips"].dtype == torch.float32
        assert len(batch["texts"]) == 4 and all(batch["texts"]) and batch["skipped"] == 0
    again = epoch(stream(paths, cfg), 0, workers=2)
    assert [b["texts"] for b in again] == [b["texts"] for b in first]
    assert all(torch.equal(a["clips"], b["clips"]) for a, b in zip(first, again, strict=True))

    resumed = epoch(stream(paths, cfg), 3, workers=2)  # 3 batches of epoch 0 already trained
    assert [b["texts"] for b in resumed] == [b["texts"] for b in first[3:]]
    assert torch.equal(resumed[0]["clips"], first[3]["clips"])

    next_epoch = epoch(stream(paths, cfg), 5, workers=2)
    other_rank = epoch(stream(paths, cfg, rank=1), 0, workers=2)
    assert len(next_epoch) == len(other_rank) == 5
    texts = [b["texts"] for b in first]
    assert [b["texts"] for b in next_epoch] != texts and [b["texts"] for b in other_rank] != texts


def corrupt_shard(good_tar, out):
    """The good shard's videos, plus a video that is not one, a record that is not JSON and a video
    without its mp4."""
    [(key, files)] = list(read_tar(good_tar))
    record = json.loads(files["json"])
    samples = []
    for name, mp4 in [
        ("broken", b"\x00not a video" * 100),
        ("truncated", files["mp4"][: len(files["mp4"]) // 4]),
    ]:
        samples.append((name, {"json": json.dumps({**record, "video_uid": name}).encode(), "mp4": mp4}))
    samples.append(("badjson", {"json": b"{not json", "mp4": files["mp4"]}))
    samples.append(("nomp4", {"json": json.dumps({**record, "video_uid": "nomp4"}).encode()}))
    samples.append((key, files))  # last, so that the bad ones are met first
    write_tar(out, samples)
    return out


def nodes_with_text(tar):
    [(_, files)] = list(read_tar(tar))
    record = VideoRecord.from_json(files["json"])
    return [node for node in record.nodes if node_texts(node, record.metadata, list(FIELDS))]


def test_undecodable_samples_are_counted_and_skipped(shards, tmp_path):
    good = next((shards / "shards").glob("*.tar"))
    mixed = corrupt_shard(good, tmp_path / "mixed.tar")
    cfg = config(shards, num_workers=0, epoch_batches=8, shuffle_buffer=10)
    batches = epoch(stream([mixed], cfg), 0, workers=0)
    assert len(batches) == 8  # the good video's nodes fill every batch
    # two unusable records and every node of the video that is not one (the truncated one may add more)
    assert sum(b["skipped"] for b in batches) >= 2 + len(nodes_with_text(good))


def test_a_stream_of_nothing_but_bad_samples_stops_with_the_cause(shards, tmp_path):
    good = next((shards / "shards").glob("*.tar"))
    [(key, files)] = list(read_tar(good))
    bad = write_tar(tmp_path / "bad.tar", [(key, {"json": files["json"], "mp4": b"garbage" * 50})])
    cfg = config(shards, num_workers=0, max_consecutive_failures=20)
    with pytest.raises(DataError, match="21 unreadable samples in a row, the last: .*synth"):
        epoch(stream([tmp_path / "bad.tar"], cfg), 0, workers=0)
    assert bad[0] == 1


def many_videos(shards, out, shard_count=50, videos_per_shard=8, nodes_per_video=20):
    """A reference-only shard set (records without mp4, pointing at one real video) of many videos of
    many nodes, each node's label naming its video."""
    [(_, files)] = list(read_tar(next((shards / "shards").glob("*.tar"))))
    source = out / "source.mp4"
    source.write_bytes(files["mp4"])
    duration = float(VideoRecord.from_json(files["json"]).root.end)
    rng = random.Random(0)
    paths = []
    for shard in range(shard_count):
        samples = []
        for index in range(videos_per_shard):
            uid = f"v{shard:03d}x{index:02d}"
            nodes = [
                {
                    "node_id": "r",
                    "parent_id": None,
                    "level": 0,
                    "start": 0.0,
                    "end": duration,
                    "action_label": f"{uid} r",
                }
            ]
            for n in range(nodes_per_video - 1):
                start = rng.uniform(0, duration - 1)
                nodes.append(
                    {
                        "node_id": f"n{n}",
                        "parent_id": "r",
                        "level": 1,
                        "start": start,
                        "end": min(duration, start + rng.uniform(0.5, 3)),
                        "action_label": f"{uid} {n}",
                    }
                )
            record = {
                "video_uid": uid,
                "metadata": {"duration": duration},
                "nodes": nodes,
                "source_path": str(source),
            }
            samples.append((uid, {"json": json.dumps(record).encode()}))
        paths.append(out / f"s{shard:03d}.tar")
        write_tar(paths[-1], samples)
    return paths


def same_video_pair_rate(batches):
    pairs = same = 0
    for batch in batches:
        videos = [text.split()[0] for text in batch["texts"]]
        pairs += len(videos) * (len(videos) - 1) // 2
        same += sum(count * (count - 1) // 2 for count in Counter(videos).values())
    return same / pairs


def test_a_batch_takes_its_nodes_from_distinct_videos(shards, tmp_path):
    paths = many_videos(shards, tmp_path)
    cfg = config(
        shards,
        text_fields={"action_label": 1.0},
        batch_size=8,
        num_workers=0,
        epoch_batches=30,
        shuffle_buffer=200,
    )
    batches = epoch(stream(paths, cfg), 0, workers=0)
    uniform = 1 / (len(paths) * 8 - 1)  # 400 videos of 20 nodes: a random pair shares its video
    # the old 200-node shuffle buffer held ~10 videos: a rate ~20x uniform
    assert same_video_pair_rate(batches) <= 2 * uniform


def test_workers_are_forked_once_across_epochs(shards, tmp_path, monkeypatch):
    import action100m.train.data.stream as stream_module

    pids = tmp_path / "pids"
    created = []

    class Counting(DataLoader):
        def __init__(self, *args, **kwargs):
            created.append(1)
            super().__init__(
                *args, worker_init_fn=lambda _: open(pids, "a").write(f"{os.getpid()}\n"), **kwargs
            )

    monkeypatch.setattr(stream_module, "DataLoader", Counting)
    cfg = config(shards, epoch_batches=3)
    paths = select_scale(shards, 1.0).shards
    trained = [0]
    loader = StreamLoader(stream(paths, cfg), lambda: trained[0], 2)
    epochs = []
    for _ in range(3):
        epochs.append([batch["texts"] for batch in loader])
        trained[0] += len(epochs[-1])
    assert [len(texts) for texts in epochs] == [3, 3, 3]
    assert len(created) == 1 and len(set(pids.read_text().split())) == 2
    # the same batches as loaders started at each epoch (a resumed run)
    for index, texts in enumerate(epochs):
        assert [b["texts"] for b in epoch(stream(paths, cfg), 3 * index, workers=2)] == texts


def test_a_video_the_configured_backend_cannot_decode_is_read_by_the_next(tmp_path):
    """The build's fallback keeps AV1 uploads (decord's FFmpeg has no AV1 decoder); training reads them."""
    frames = [np.full((32, 32, 3), 12 * k, np.uint8) for k in range(20)]
    av1 = write_kind(tmp_path, next(k for k in KINDS if k.name == "av1_mp4"), frames, fps=10)
    cfg = config(tmp_path, num_frames=4, crop_size=32, video_backend=VideoBackend.decord)
    clip = stream([], cfg).decode(NodeSample("av1/n0", 0.0, 1.5, "a text", str(av1)))
    assert clip.shape == (4, 3, 32, 32)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError):
        stream([], cfg).decode(NodeSample("garbage/n0", 0.0, 1.0, "a text", str(garbage)))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_forked_loader_workers_decode_after_the_parent_decoded_with_pyav(shards, tmp_path, backend):
    """Training forks its loader workers after the parent has decoded with PyAV (the clip cache, the
    zero-shot validation subset); with av 18.1.1 each worker decoding with PyAV hung at its first frame."""
    paths = select_scale(shards, 0.25).shards
    [(_, sample)] = list(itertools.islice(read_tar(paths[0]), 1))
    with open_video(sample["mp4"], "pyav", name="the parent's decode") as parent:
        parent.read_frames(range(4))
    cfg = config(shards, video_backend=VideoBackend(backend), epoch_batches=2)
    first, again = epoch(stream(paths, cfg), 0, workers=2), epoch(stream(paths, cfg), 0, workers=2)
    assert [batch["clips"].shape for batch in first] == [(4, 8, 3, 32, 32)] * 2
    assert all(batch["skipped"] == 0 for batch in first)
    assert all(torch.equal(a["clips"], b["clips"]) for a, b in zip(first, again, strict=True))
