"""The training stream: resampled shards → records → nodes (filters, text mix, resampling) → shuffle →
clips decoded in the DataLoader worker → batches, a fixed number per rank and epoch.

Determinism and resume. A rank's epoch is cut into W streams (W = loader workers): stream s makes the
epoch's batches s, s + W, s + 2W, ... and is seeded by (seed, rank, epoch, s) alone. The DataLoader
takes batches from its workers in turn, so the batches arrive in epoch order, and the same config gives
the same batches. To start mid-epoch (a resumed run) each stream skips its batches before the start
by counting nodes before they are decoded, which costs a read of the records but no video decoding.
(A sample that fails to decode shifts its stream by one from there on, so only runs free of decode
failures resume bit-exactly.)

Bad samples are counted, never fatal, never retried: a record that does not parse, a video that does
not decode, an unreadable shard. Each batch carries the count since the previous one. Only a long run
of failures with no good sample in between stops training, with the last error.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from action100m.data.config import DataConfig
from action100m.data.fields import FieldMix, keeps, node_texts
from action100m.data.resample import dedupe_key
from action100m.errors import Action100MError
from action100m.schema import VideoRecord
from action100m.video import open_video
from action100m.video.sampling import uniform_indices
from action100m.video.transforms import preprocess_clip


class DataError(Action100MError):
    """The stream met nothing but unreadable samples for too long."""


@dataclass(frozen=True)
class NodeSample:
    key: str  # video_uid/node_id
    start: float
    end: float
    text: str
    video: bytes | str  # the sample's mp4, or the source path a reference-only build recorded


class _Failures:
    """Counts skipped samples; raises once too many come in a row."""

    def __init__(self, limit: int):
        self.limit, self.pending, self.in_a_row = limit, 0, 0

    def skip(self, err: BaseException) -> bool:
        self.pending += 1
        self.in_a_row += 1
        if self.in_a_row > self.limit:
            raise DataError(f"{self.in_a_row} unreadable samples in a row, the last: {err}") from err
        return True  # webdataset handler protocol: continue with the next sample

    def ok(self) -> None:
        self.in_a_row = 0

    def take(self) -> int:
        count, self.pending = self.pending, 0
        return count


class NodeStream(IterableDataset):
    """Batches {"clips": (B, T, 3, S, S) float, "texts": [str], "skipped": int} of one rank.

    `epoch` and `skip` (batches already trained this epoch) are set before each iteration."""

    def __init__(self, shards: list[str], cfg: DataConfig, mix: FieldMix, rates: dict[str, float] | None,
                 rank: int, batches: int, seed: Any):  # fmt: skip
        super().__init__()
        self.shards, self.cfg, self.mix, self.rates = list(shards), cfg, mix, rates
        self.rank, self.batches, self.seed = rank, batches, seed
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        return self.batches - self.skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        stream = (self.skip + worker) % workers
        mine = range(stream, self.batches, workers)
        before = sum(1 for batch in mine if batch < self.skip)
        rng = random.Random(f"{self.seed}:{self.rank}:{self.epoch}:{stream}")
        failures = _Failures(self.cfg.max_consecutive_failures)
        pipeline = wds.DataPipeline(
            wds.ResampledShards(
                self.shards, seed=rng.randrange(2**31), worker_seed=lambda: 0, deterministic=True
            ),
            wds.tarfile_to_samples(handler=failures.skip),
            lambda samples: self._nodes(samples, rng, failures),
            wds.shuffle(self.cfg.shuffle_buffer, initial=self.cfg.shuffle_buffer, rng=rng),
            wds.slice(before * self.cfg.batch_size, None),
            lambda nodes: self._batches(nodes, failures),
            wds.slice(len(mine) - before),
        )
        return iter(pipeline)

    def _nodes(
        self, samples: Iterator[dict], rng: random.Random, failures: _Failures
    ) -> Iterator[NodeSample]:
        cfg = self.cfg
        for sample in samples:
            try:
                record = VideoRecord.from_json(sample["json"])
                video = sample.get("mp4") or record.extra["source_path"]
            except (Action100MError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
                failures.skip(ValueError(f"{sample.get('__key__')}: unusable record: {err}"))
                continue
            for node in record.nodes:
                if not keeps(node, cfg.min_duration, cfg.max_duration, cfg.annotated_only):
                    continue
                texts = node_texts(node, record.metadata, self.mix.fields)
                text = self.mix.choose(texts, rng)
                if text is None:
                    continue
                item = NodeSample(f"{record.video_uid}/{node.node_id}", node.start, node.end, text, video)
                for _ in range(self._copies(node, record.metadata, rng)):
                    yield item

    def _copies(self, node: Any, metadata: dict, rng: random.Random) -> int:
        if self.rates is None:
            return 1
        brief = node_texts(node, metadata, ["action_brief"]).get("action_brief")
        rate = self.rates.get(dedupe_key(brief), 1.0) if brief else 1.0
        whole = int(rate)
        return whole + (rng.random() < rate - whole)

    def decode(self, item: NodeSample) -> torch.Tensor:
        """The clip of one node: T frames uniformly over [start, end], one decode, preprocessed."""
        cfg = self.cfg
        source = open_video(
            item.video, cfg.video_backend.value, name=item.key, num_threads=cfg.decode_threads
        )
        try:
            info = source.info
            indices = uniform_indices(item.start, item.end, info.fps, info.num_frames, cfg.num_frames)
            return preprocess_clip(source.read_frames(indices), cfg.crop_size)
        finally:
            source.close()

    def _batches(self, nodes: Iterator[NodeSample], failures: _Failures) -> Iterator[dict[str, Any]]:
        clips, texts = [], []
        for item in nodes:
            try:
                clip = self.decode(item)
            except (Action100MError, OSError, ValueError) as err:
                failures.skip(err)
                continue
            failures.ok()
            clips.append(clip)
            texts.append(item.text)
            if len(clips) == self.cfg.batch_size:
                yield {"clips": torch.stack(clips), "texts": texts, "skipped": failures.take()}
                clips, texts = [], []


class StreamLoader:
    """A DataLoader over a `NodeStream` that starts each iteration where training is: at the batch
    `position()` returns (batches this rank has trained on), so a resumed run sees the data the
    uninterrupted run would have."""

    def __init__(self, dataset: NodeStream, position: Any, num_workers: int):
        self.dataset, self.position, self.num_workers = dataset, position, num_workers

    def __len__(self) -> int:
        return self.dataset.batches

    # Lightning's protocol for loaders that resume themselves; the position needs no state of its own.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.dataset.epoch, self.dataset.skip = divmod(self.position(), self.dataset.batches)
        # Workers are forked here, after epoch and skip are set, and live for this epoch only.
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                            prefetch_factor=2 if self.num_workers else None)  # fmt: skip
        return iter(loader)
