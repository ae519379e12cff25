"""Decoded clips kept on disk (`data.clip_cache=true`), for shard sets small enough to hold them.

Without it every sample decodes its clip from the mp4 each time it is drawn: on a CPU that is most of
a small run's time (the demo draws each node ~3 times at full scale and ~28 times at 10%), and every run
of a sweep decodes the same clips again. With it, each shard's clips are decoded once, into
cache/clips/<shard>-<sha256>-<key>.npy (uint8, nodes x T x 3 x S x S: `crop_clip`'s output, which
`preprocess_clip` normalises, so a cached clip is the float clip the decoder path gives) and a .json listing the node keys in row order. The key covers what changes the clips (frames,
crop, node filters, backend), so runs at any scale, seed or text mix share them. Each video is decoded
in one front-to-back pass over the frames all of its nodes need, rather than one seek per node.

The stream reads the arrays memory-mapped: the workers share one copy in the page cache. Memory and
disk: 49 KB a node at 4 frames of 64² (the demo's 200 videos: ~6,000 nodes, 293 MB); at the paper's
scale the cache is not for this.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from action100m.dataset.schema import VideoRecord
from action100m.dataset.shards import ShardError, read_tar
from action100m.train.data.config import DataConfig
from action100m.train.data.fields import keeps
from action100m.train.data.scan import load_or_compute
from action100m.video import VideoDecodeError, backend_chain, open_video
from action100m.video.sampling import uniform_indices
from action100m.video.transforms import crop_clip

CLIP_CACHE_VERSION = 1


def clip_cache_key(cfg: DataConfig) -> str:
    settings = {
        "version": CLIP_CACHE_VERSION,
        "num_frames": cfg.num_frames,
        "crop_size": cfg.crop_size,
        "min_duration": cfg.min_duration,
        "max_duration": cfg.max_duration,
        "annotated_only": cfg.annotated_only,
        "video_backend": cfg.video_backend.value,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def clip_cache_paths(cache: Path, shard: Path, sha256: str, cfg: DataConfig) -> tuple[Path, Path]:
    """The shard's clip array and its key list; the list is written last, so it marks a complete cache."""
    stem = f"{shard.name}-{sha256[:16]}-{clip_cache_key(cfg)}"
    return cache / "clips" / f"{stem}.npy", cache / "clips" / f"{stem}.json"


def video_clips(
    video: bytes | str, nodes: list[tuple[float, float]], cfg: DataConfig, name: str
) -> list[torch.Tensor]:
    """The uint8 clips of `nodes` (start, end) of one video, from one pass over the frames they need. A
    video the configured backend cannot decode is read by the next one, as the build's `video.fallback`
    did (its record names that backend): decord cannot decode AV1, PyAV can."""
    first_error: VideoDecodeError | None = None
    for backend in backend_chain(cfg.video_backend.value):
        source = open_video(video, backend, name=name, num_threads=cfg.decode_threads)
        try:
            info = source.info
            wanted = [
                uniform_indices(start, end, info.fps, info.num_frames, cfg.num_frames) for start, end in nodes
            ]
            frames = sorted({i for indices in wanted for i in indices})
            decoded = source.read_frames(frames)
            row = {frame: k for k, frame in enumerate(frames)}
            return [crop_clip(decoded[[row[i] for i in indices]], cfg.crop_size) for indices in wanted]
        except VideoDecodeError as err:
            first_error = first_error or err
        finally:
            source.close()
    raise first_error


def _members(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The shard's samples up to any bad member: the stream counts the rest as it does uncached."""
    try:
        yield from read_tar(shard)
    except ShardError:
        return


def build_shard_clips(shard: Path, sha256: str, cache: Path, cfg: DataConfig) -> tuple[Path, Path]:
    """Decode the clips of every node of `shard` that passes the node filters, unless cached already;
    a process that finds another decoding the shard (the lock beside its key list) waits for it.

    A record that does not parse or a video that does not decode is left out (the stream then decodes
    those nodes itself, and counts them as it does without the cache)."""
    array_path, keys_path = clip_cache_paths(cache, shard, sha256, cfg)

    def decode(heartbeat: Callable[[], None]) -> list[str]:
        keys: list[str] = []
        clips: list[torch.Tensor] = []
        for key, files in _members(shard):
            try:
                record = VideoRecord.from_json(files["json"])
                video = files.get("mp4") or record.extra["source_path"]
                nodes = [
                    node
                    for node in record.nodes
                    if keeps(node, cfg.min_duration, cfg.max_duration, cfg.annotated_only)
                ]
                if nodes:
                    spans = [(node.start, node.end) for node in nodes]
                    clips.extend(video_clips(video, spans, cfg, f"{shard.name}/{key}"))
                    keys.extend(f"{record.video_uid}/{node.node_id}" for node in nodes)
            except (ValueError, KeyError, OSError, VideoDecodeError):
                pass
            heartbeat()
        size = cfg.crop_size
        array = (
            torch.stack(clips).numpy()
            if clips
            else np.zeros((0, cfg.num_frames, 3, size, size), dtype=np.uint8)
        )
        partial = array_path.with_name(f".{array_path.name}.partial")
        with open(partial, "wb") as handle:
            np.save(handle, array)
        partial.replace(array_path)
        return keys

    load_or_compute(keys_path, decode)
    return array_path, keys_path


class ClipCache:
    """The cached clips of a shard set, opened lazily per shard: `get(shard, key)` is the uint8 TCHW
    clip, or None for a node the cache does not hold."""

    def __init__(self, paths: dict[str, tuple[Path, Path]]):
        self.paths = paths  # shard url -> (array, keys)
        self._open: dict[str, tuple[np.ndarray, dict[str, int]]] = {}

    def get(self, shard: str, key: str) -> torch.Tensor | None:
        if shard not in self.paths:
            return None
        if shard not in self._open:
            array_path, keys_path = self.paths[shard]
            keys = json.loads(keys_path.read_text(encoding="utf-8"))
            self._open[shard] = (np.load(array_path, mmap_mode="r"), {k: i for i, k in enumerate(keys)})
        array, rows = self._open[shard]
        row = rows.get(key)
        return None if row is None else torch.from_numpy(np.array(array[row]))


def build_clip_cache(
    shards: Sequence[Path], sha256s: Sequence[str], cache: Path, cfg: DataConfig
) -> ClipCache:
    """The clip cache of `shards`, decoding the shards not cached yet in parallel (one process a core),
    with a line of progress per shard."""
    paths = [clip_cache_paths(cache, shard, sha, cfg) for shard, sha in zip(shards, sha256s, strict=True)]
    todo = [
        (shard, sha)
        for (shard, sha), (_, keys) in zip(zip(shards, sha256s, strict=True), paths, strict=True)
        if not keys.is_file()
    ]
    if todo:
        workers = max(1, min(len(todo), os.cpu_count() or 1))
        print(
            f"clip cache: decoding {len(todo)} shards with {workers} processes into {cache / 'clips'}",
            file=sys.stderr,
            flush=True,
        )
        # spawned, not forked: a fork of a process running torch's threads can deadlock in the child
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(build_shard_clips, shard, sha, cache, cfg) for shard, sha in todo]
            for done, job in enumerate(jobs, 1):
                job.result()
                print(f"clip cache: {done}/{len(todo)} shards", file=sys.stderr, flush=True)
    return ClipCache({str(shard): pair for shard, pair in zip(shards, paths, strict=True)})
