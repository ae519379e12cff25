"""The training stream: resampled shards, several read at once → records → nodes (filters, text mix,
resampling) → a pool of videos that each batch draws distinct videos from → clips decoded in the
DataLoader worker → batches, a fixed number per rank and epoch.

Batch composition. The nodes of one video overlap (a parent and its children span the same frames,
their texts describe the same action), so two of them in one batch are false negatives for InfoNCE.
A shuffle buffer of nodes holds few videos (1,000 nodes are ~8 of the paper's trees), so its batches
were full of such pairs. The pool instead holds whole videos until it has `data.shuffle_buffer` nodes,
and takes each batch's nodes from distinct videos of it (one node each), so that with a pool of more
videos than a batch has samples, a batch has no two nodes of one video; every node is still emitted
once per pass. Memory is the pool's videos: shuffle_buffer / (nodes per video) mp4s per worker.

Determinism and resume. A rank's epoch is cut into W streams (W = loader workers): stream s makes the
epoch's batches s, s + W, s + 2W, ... and is seeded by (seed, rank, epoch, s) alone. The DataLoader
takes batches from its workers in turn, so the batches arrive in epoch order, and the same config gives
the same batches. Workers live for the whole fit, not one epoch: each iterates its share of the
batches from the start position on, epoch after epoch (its stream of each epoch, in turn). To start
mid-epoch (a resumed run) each stream skips its batches before the start by counting nodes before
they are decoded, which costs a read of the records but no video decoding. (A sample that fails to
decode shifts its stream by one from there on, so only runs free of decode failures resume
bit-exactly.)

Bad samples are counted, never fatal, never retried: a record that does not parse, a video that does
not decode, an unreadable shard. Each batch carries the count since the previous one. Only a long run
of failures with no good sample in between stops training, with the last error.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import ShardError, read_tar
from action100m.errors import Action100MError
from action100m.train.data.clips import ClipCache, video_clips
from action100m.train.data.config import DataConfig
from action100m.train.data.fields import FieldMix, keeps, node_texts
from action100m.train.data.resample import dedupe_key
from action100m.video.transforms import normalize_clip


class DataError(Action100MError):
    """The stream met nothing but unreadable samples for too long."""


@dataclass(frozen=True)
class NodeSample:
    key: str  # video_uid/node_id
    start: float
    end: float
    text: str
    video: bytes | str  # the sample's mp4, or the source path a reference-only build recorded
    shard: str = ""


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

    Iterating it yields the rank's batches from `start` (batches already trained) on, without end, epoch
    after epoch; `repeat` makes every epoch epoch 0 (validation: the same batches each pass)."""

    def __init__(
        self,
        shards: list[str],
        cfg: DataConfig,
        mix: FieldMix,
        rates: dict[str, float] | None,
        rank: int,
        batches: int,
        seed: Any,
        repeat: bool = False,
        clips: ClipCache | None = None,
    ):
        super().__init__()
        self.shards, self.cfg, self.mix, self.rates = list(shards), cfg, mix, rates
        self.rank, self.batches, self.seed, self.repeat = rank, batches, seed, repeat
        self.clips = clips
        self.start = 0

    def __len__(self) -> int:
        return self.batches  # one epoch; the iteration itself does not end

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        position = self.start + worker  # this worker makes every W-th batch from here
        while True:
            epoch, first = divmod(position, self.batches)
            stream = first % workers  # in each epoch, this worker's batches are one stream's
            count = len(range(first, self.batches, workers))
            yield from self._stream(0 if self.repeat else epoch, stream, (first - stream) // workers, count)
            position += count * workers

    def _stream(self, epoch: int, stream: int, before: int, count: int) -> Iterator[dict[str, Any]]:
        """Batches `before`, ... `before + count - 1` of stream `stream` of `epoch`."""
        failures = _Failures(self.cfg.max_consecutive_failures)
        nodes = islice(self.node_order(epoch, stream, failures), before * self.cfg.batch_size, None)
        return islice(self._batches(nodes, failures), count)

    def node_order(self, epoch: int, stream: int, failures: _Failures | None = None) -> Iterator[NodeSample]:
        """The nodes of stream `stream` of `epoch` in the order they are batched, before any decoding."""
        rng = random.Random(f"{self.seed}:{self.rank}:{epoch}:{stream}")
        failures = failures or _Failures(self.cfg.max_consecutive_failures)
        shards = iter(
            wds.ResampledShards(
                self.shards, seed=rng.randrange(2**31), worker_seed=lambda: 0, deterministic=True
            )
        )
        videos = self._videos(self._interleaved(shards, failures), rng, failures)
        return self._spread(videos, rng)

    def _interleaved(self, shards: Iterator[dict], failures: _Failures) -> Iterator[dict]:
        """The samples of `open_shards` distinct shards at a time, in turn: consecutive videos of one
        shard (one source, one build batch) do not arrive together, and no video is read twice at once."""

        def read(url: str) -> Iterator[dict]:
            # webdataset's own reader checks no member; a shard that fails the checks counts as one
            # bad sample, and its samples from the bad member on are skipped (as an unreadable tar is)
            try:
                for key, files in read_tar(url):
                    yield {"__key__": key, "__url__": url, **files}
            except ShardError as err:
                failures.skip(err)

        def another(taken: set[str]) -> tuple[str, Iterator[dict]]:
            url = next(shard["url"] for shard in shards if shard["url"] not in taken)
            return url, read(url)

        readers: list[tuple[str, Iterator[dict]]] = []
        for _ in range(min(self.cfg.open_shards, len(set(self.shards)))):
            readers.append(another({url for url, _ in readers}))
        while True:
            for index, (_, reader) in enumerate(readers):
                sample = next(reader, None)
                if sample is None:
                    readers[index] = another({url for i, (url, _) in enumerate(readers) if i != index})
                else:
                    yield sample

    def _videos(
        self, samples: Iterator[dict], rng: random.Random, failures: _Failures
    ) -> Iterator[list[NodeSample]]:
        """Per record, its training nodes (each as many times as resampling emits it)."""
        cfg = self.cfg
        for sample in samples:
            try:
                record = VideoRecord.from_json(sample["json"])
                video = sample.get("mp4") or record.extra["source_path"]
            except (Action100MError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
                failures.skip(ValueError(f"{sample.get('__key__')}: unusable record: {err}"))
                continue
            nodes = []
            for node in record.nodes:
                if not keeps(node, cfg.min_duration, cfg.max_duration, cfg.annotated_only):
                    continue
                texts = node_texts(node, record.metadata, self.mix.fields)
                text = self.mix.choose(texts, rng)
                if text is None:
                    continue
                key = f"{record.video_uid}/{node.node_id}"
                item = NodeSample(key, node.start, node.end, text, video, sample.get("__url__", ""))
                nodes.extend([item] * self._copies(node, record.metadata, rng))
            if nodes:
                yield nodes

    def _spread(self, videos: Iterator[list[NodeSample]], rng: random.Random) -> Iterator[NodeSample]:
        """The pool (see the module docstring): whole videos in until it holds `shuffle_buffer` nodes;
        each batch's worth of nodes drawn one per video from distinct videos, as far as it has them."""
        pool: list[list[NodeSample]] = []
        held, left, size = 0, self.cfg.batch_size, self.cfg.batch_size
        while True:
            while held < self.cfg.shuffle_buffer or not pool:
                nodes = next(videos, None)
                if nodes is None:
                    break
                rng.shuffle(nodes)
                pool.append(nodes)
                held += len(nodes)
            if not pool:
                return
            picks = rng.sample(range(len(pool)), min(left, len(pool)))
            for index in picks:
                yield pool[index].pop()
            held -= len(picks)
            left = left - len(picks) or size
            pool = [nodes for nodes in pool if nodes]

    def _copies(self, node: Any, metadata: dict, rng: random.Random) -> int:
        if self.rates is None:
            return 1
        brief = node_texts(node, metadata, ["action_brief"]).get("action_brief")
        rate = self.rates.get(dedupe_key(brief), 1.0) if brief else 1.0
        whole = int(rate)
        return whole + (rng.random() < rate - whole)

    def decode(self, item: NodeSample) -> torch.Tensor:
        """The clip of one node: T frames uniformly over [start, end], one decode, preprocessed (or the
        clip cache's copy). A video the configured backend cannot decode is read by the next one, as the
        build's `video.fallback` did (its record names that backend): decord cannot decode AV1, PyAV can."""
        cfg = self.cfg
        cached = self.clips.get(item.shard, item.key) if self.clips is not None else None
        if cached is None:
            cached = video_clips(item.video, [(item.start, item.end)], cfg, item.key)[0]
        return normalize_clip(cached)

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


@contextmanager
def _job_signals_ignored_by_forks() -> Iterator[None]:
    """Loader workers forked inside ignore SLURM's time-limit signal (USR1) and die of SIGTERM. SLURM
    signals every process of a job step, workers included, and a forked worker holds a copy of
    Lightning's handlers and of the trainer as it was at the fork: on USR1 it would write its own
    requeue checkpoint at that stale step and requeue the job again (on SIGTERM, broadcast to a process
    group it is not in). The training process alone checkpoints and requeues. SIGTERM stays deadly:
    that is how the loader (and multiprocessing at exit) stops workers that serve epoch after epoch.
    The training process has its own handlers back once the workers are forked."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, usr1)
        signal.signal(signal.SIGTERM, term)


class StreamLoader:
    """A DataLoader over a `NodeStream` that starts each iteration where training is: at the batch
    `position()` returns (batches this rank has trained on), so a resumed run sees the data the
    uninterrupted run would have. Its workers are forked once and serve epoch after epoch; only a
    position other than where they are (a new fit, a resume) starts new ones."""

    def __init__(self, dataset: NodeStream, position: Any, num_workers: int):
        self.dataset, self.position, self.num_workers = dataset, position, num_workers
        self._batches: Iterator[dict[str, Any]] | None = None
        self._next = 0  # the position of the batch `_batches` yields next

    def __len__(self) -> int:
        return self.dataset.batches

    # Lightning's protocol for loaders that resume themselves; the position needs no state of its own.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __iter__(self) -> Iterator[dict[str, Any]]:
        position, batches = self.position(), self.dataset.batches
        # a repeating (validation) stream is where it should be at the start of any pass
        here = self._next % batches == position % batches if self.dataset.repeat else self._next == position
        if self._batches is None or not here:
            self._batches = None  # its workers end before the new ones start
            self.dataset.start = position
            loader = DataLoader(
                self.dataset,
                batch_size=None,
                num_workers=self.num_workers,
                prefetch_factor=2 if self.num_workers else None,
            )
            with _job_signals_ignored_by_forks():  # the workers fork in iter()
                self._batches, self._next = iter(loader), position
        return self._epoch(batches - position % batches)

    def _epoch(self, count: int) -> Iterator[dict[str, Any]]:
        for _ in range(count):
            batch = next(self._batches)
            self._next += 1
            yield batch
