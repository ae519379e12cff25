"""Batch composition: how often two samples of one batch are nodes of the same video (false negatives
for InfoNCE: a parent and its child span the same frames), with the GPU presets (data=gpu
trainer=gpu model=vljepa_paper: 32 clips per GPU, 10 workers), against uniform sampling.

The shard set is synthetic and reference-only (records, no videos: nothing is decoded): 20,000
videos of ~40 nodes (geometric, at least 5), 100 videos a shard. Measured on the nodes in the order
they are batched, side by side:
  new      NodeStream.node_order, each worker's stream of epoch 0, cut into batches
  old      the previous pipeline: one shard at a time, every node of a video into a 1,000-node
           shuffle buffer (wds.shuffle), cut into batches
  uniform  the rate of a pair drawn uniformly without replacement from all nodes of the set
and the new pipeline once more at 384 clips per GPU (the paper's 12,288 over 32 GPUs without
accumulation), where the pool holds fewer videos than a batch has samples.
Target: same_video_pair_rate within 2x of uniform_rate (at or below it is better still).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import webdataset as wds
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action100m.config import CONFIG_DIR  # noqa: E402
from action100m.dataset.schema import VideoRecord  # noqa: E402
from action100m.dataset.shards import write_tar  # noqa: E402
from action100m.train.config import register_train_configs  # noqa: E402
from action100m.train.data.fields import FieldMix  # noqa: E402
from action100m.train.data.stream import NodeStream  # noqa: E402

PER_SHARD, MEAN_NODES, OLD_BUFFER = 100, 40, 1000


def node(uid: str, node_id: str, parent: str | None, level: int, start: float, end: float) -> dict:
    brief = f"{uid} {node_id}"
    return {
        "node_id": node_id,
        "parent_id": parent,
        "level": level,
        "start": start,
        "end": end,
        "annotation": {
            "summary": {"brief": brief, "detailed": brief},
            "action": {"brief": brief, "detailed": brief, "actor": "a person"},
        },
    }


def record(uid: str, nodes: int, rng: random.Random) -> dict:
    """A root and two levels of children tiling it, `nodes` in all."""
    duration = round(rng.uniform(60, 600), 1)
    tree = [node(uid, "r", None, 0, 0.0, duration)]
    middles = max(1, (nodes - 1) // 5)
    edges = [round(duration * i / middles, 3) for i in range(middles + 1)]
    for m in range(middles):
        tree.append(node(uid, f"m{m}", "r", 1, edges[m], edges[m + 1]))
    leaves = nodes - 1 - middles
    for m in range(middles):
        share = len(range(m, leaves, middles))  # the leaves under middle m tile it
        span = (edges[m + 1] - edges[m]) / max(1, share)
        for k, leaf in enumerate(range(m, leaves, middles)):
            tree.append(node(uid, f"l{leaf}", f"m{m}", 2, edges[m] + k * span, edges[m] + (k + 1) * span))
    return {
        "video_uid": uid,
        "metadata": {"duration": duration},
        "nodes": tree,
        "source_path": f"/videos/{uid}.mp4",
    }


def shard_set(root: Path, videos: int, seed: int) -> tuple[list[str], list[int]]:
    """The shard paths and every video's node count (generated once per size and seed)."""
    done = root / "sizes.json"
    if not done.is_file():
        rng = random.Random(seed)
        sizes = []
        for shard in range(-(-videos // PER_SHARD)):
            samples = []
            for index in range(min(PER_SHARD, videos - shard * PER_SHARD)):
                uid = f"v{shard:05d}x{index:03d}"
                count = 4 + int(rng.expovariate(1 / (MEAN_NODES - 4))) + 1
                samples.append((uid, {"json": json.dumps(record(uid, count, rng)).encode()}))
                sizes.append(count)
            write_tar(root / f"shard-{shard:05d}.tar", samples)
        done.write_text(json.dumps(sizes))
    return sorted(str(p) for p in root.glob("shard-*.tar")), json.loads(done.read_text())


def uniform_rate(sizes: list[int]) -> float:
    total = sum(sizes)
    return sum(n * (n - 1) for n in sizes) / (total * (total - 1))


def pair_rate(keys: list[str], batch: int) -> float:
    pairs = same = 0
    for start in range(0, len(keys) - batch + 1, batch):
        videos = Counter(key.split("/")[0] for key in keys[start : start + batch])
        pairs += batch * (batch - 1) // 2
        same += sum(n * (n - 1) // 2 for n in videos.values())
    return same / pairs


def old_order(stream: NodeStream, epoch: int, index: int, count: int) -> list[str]:
    """The node keys of the previous pipeline's stream, in order (its shuffle buffer: OLD_BUFFER)."""
    rng = random.Random(f"{stream.seed}:{stream.rank}:{epoch}:{index}")
    shards = wds.ResampledShards(
        stream.shards, seed=rng.randrange(2**31), worker_seed=lambda: 0, deterministic=True
    )

    def nodes(samples):
        for sample in samples:
            rec = VideoRecord.from_json(sample["json"])
            yield from (f"{rec.video_uid}/{n.node_id}" for n in rec.nodes)

    pipeline = wds.DataPipeline(
        shards, wds.tarfile_to_samples(), nodes, wds.shuffle(OLD_BUFFER, initial=OLD_BUFFER, rng=rng)
    )
    return list(islice(iter(pipeline), count))


def new_order(stream: NodeStream, epoch: int, index: int, count: int) -> list[str]:
    return [item.key for item in islice(stream.node_order(epoch, index), count)]


def preset(shards: str) -> object:
    register_train_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["data=gpu", "trainer=gpu", "model=vljepa_paper", f"data.shards={shards}"]
        )
    return OmegaConf.to_object(cfg).data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4,000 videos, 20 batches per worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "action100m-bench")
    args = parser.parse_args()
    videos, per_worker = (4_000, 20) if args.quick else (20_000, 50)
    started = time.perf_counter()
    root = args.workdir / f"batch_composition-{videos}-{args.seed}"
    root.mkdir(parents=True, exist_ok=True)
    shards, sizes = shard_set(root, videos, args.seed)
    cfg = preset(str(root))
    print(
        f"shard set: {len(sizes)} videos, {sum(sizes)} nodes ({sum(sizes) / len(sizes):.1f} a video), "
        f"{len(shards)} shards; preset: batch {cfg.batch_size}, {cfg.num_workers} workers, shuffle_buffer "
        f"{cfg.shuffle_buffer} nodes, open_shards {cfg.open_shards} ({time.perf_counter() - started:.1f} s)"
    )
    stream = NodeStream(shards, cfg, FieldMix(cfg.text_fields), None, 0, cfg.epoch_batches, cfg.seed)
    workers, batch, big = range(max(1, cfg.num_workers)), cfg.batch_size, 384
    new = [pair_rate(new_order(stream, 0, w, batch * per_worker), batch) for w in workers]
    old = [pair_rate(old_order(stream, 0, w, batch * per_worker), batch) for w in workers]
    wide = [pair_rate(new_order(stream, 0, w, big * max(4, per_worker // 4)), big) for w in workers[:3]]
    rate, old_rate, wide_rate = (sum(r) / len(r) for r in (new, old, wide))
    uniform = uniform_rate(sizes)
    print(
        f"  same-video pair rate, batch {cfg.batch_size}: new {rate:.2e}, old {old_rate:.2e}, uniform "
        f"{uniform:.2e} (new/uniform {rate / uniform:.2f}, old/uniform {old_rate / uniform:.0f})"
    )
    print(
        f"  at batch {big}: new {wide_rate:.2e} ({wide_rate / uniform:.1f}x uniform; a same-video "
        f"companion per sample: {wide_rate * (big - 1):.2f} new vs {old_rate * (big - 1):.1f} old)"
    )
    print(
        f"RESULT same_video_pair_rate={rate:.3g} uniform_rate={uniform:.3g} old_pipeline_rate={old_rate:.3g} "
        f"ratio_to_uniform={rate / uniform:.2f} old_ratio_to_uniform={old_rate / uniform:.1f} "
        f"rate_batch{big}={wide_rate:.3g} seconds={time.perf_counter() - started:.1f}"
    )


if __name__ == "__main__":
    main()
