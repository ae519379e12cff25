"""Writing a SynthActions dataset: the videos, the build manifest, the ground truth and the benchmark.

Layout of OUT:
  videos/synth-000000.mp4 ...   H.264, one per video
  manifest.jsonl                the build input, one line per video: {video_uid, path, metadata}, with
                                `path` relative to the manifest's folder
  ground_truth.jsonl            one line per video: steps, tasks, cuts, scenes (world.to_truth)
  benchmark/                    the zero-shot test clips in the SSv2 layout (benchmark.py)
  validation/                   the zero-shot validation clips, of other held-out compositions, likewise
  summary.json                  the arguments and counts

Video k depends only on (seed, k): a run with more videos starts with the same ones. Same arguments,
same bytes: every random stream is seeded from the seed and an index, and x264 runs on one thread.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from action100m.errors import Action100MError
from action100m.synth.benchmark import write_benchmark
from action100m.synth.describer import DESCRIBER_ID
from action100m.synth.narration import metadata
from action100m.synth.render import render_video
from action100m.synth.sampler import sample_video_spec
from action100m.synth.world import HELD_OUT_SPLITS, VideoSpec, to_truth
from action100m.utils.atomic import write_json_atomic, write_text_atomic

VERSION = 1
# Spawn keys of the random streams; the benchmark splits' clips and class orders use 1, 2, 4 and 5.
VIDEO_STREAM, NARRATION_STREAM = 0, 3
SPLIT_FOLDERS = {"test": "benchmark", "validation": "validation"}
OUTPUTS = ("videos", *SPLIT_FOLDERS.values(), "manifest.jsonl", "ground_truth.jsonl", "summary.json")
MIN_SIDE, MAX_SIDE, MAX_PIXELS = 32, 1280, 1280 * 720
MIN_FPS, MAX_FPS = 4.0, 30.0


class SynthError(Action100MError):
    """Arguments the generator cannot work with; the message is one line."""


def parse_size(size: int | str) -> tuple[int, int]:
    """(width, height) from 128 (square) or "1280x720"."""
    text = str(size).strip().lower()
    try:
        width, height = (int(part) for part in text.split("x")) if "x" in text else (int(text), int(text))
    except ValueError:
        raise SynthError(f"size must be N or WxH in pixels, got {size!r}") from None
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise SynthError(f"size {width}x{height} outside {MIN_SIDE} px per side up to 720p (1280x720)")
    if width % 2 or height % 2:
        raise SynthError(f"size {width}x{height} must be even on both sides (H.264 4:2:0)")
    return width, height


def _check_counts(videos: int, benchmark_clips: int, validation_clips: int, seed: int, fps: float) -> None:
    if videos < 1:
        raise SynthError(f"videos must be at least 1, got {videos}")
    if benchmark_clips < 0:
        raise SynthError(f"benchmark clips must be 0 or more, got {benchmark_clips}")
    if validation_clips < 0:
        raise SynthError(f"validation clips must be 0 or more, got {validation_clips}")
    if seed < 0:
        raise SynthError(f"seed must be 0 or more, got {seed}")
    if not MIN_FPS <= fps <= MAX_FPS:
        raise SynthError(f"fps must be between {MIN_FPS:g} and {MAX_FPS:g}, got {fps:g}")


def _prepare(out: Path, overwrite: bool) -> None:
    """Make `out` an empty-enough, writable folder: a non-empty one only with `overwrite`, and then
    only this generator's own outputs are removed."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SynthError(f"{out} is not empty; pass --overwrite to replace the SynthActions data in it")
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as err:
        raise SynthError(f"cannot write to {out}: {err.strerror or err}") from None


def video_uid(index: int) -> str:
    return f"synth-{index:06d}"


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def video_spec(seed: int, index: int, fps: float = 10.0, width: int = 128, height: int = 128) -> VideoSpec:
    """Video `index` of the dataset made with `seed`, without rendering anything."""
    return sample_video_spec(_rng(seed, VIDEO_STREAM, index), video_uid(index), fps, width, height)


def _render_video(out: Path, seed: int, index: int, size: tuple[int, int, float]) -> tuple[dict, dict]:
    """Render video `index`; its manifest line and ground truth."""
    width, height, fps = size
    uid = video_uid(index)
    spec = video_spec(seed, index, fps, width, height)
    path = render_video(spec, out / "videos" / f"{uid}.mp4")
    meta = metadata(spec, _rng(seed, NARRATION_STREAM, index))
    return {"video_uid": uid, "path": path.relative_to(out).as_posix(), "metadata": meta}, to_truth(spec)


def generate_dataset(
    out: str | os.PathLike,
    videos: int,
    seed: int,
    benchmark_clips: int = 0,
    validation_clips: int = 0,
    size: int | str = 128,
    fps: float = 10.0,
    overwrite: bool = False,
    progress: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Write a SynthActions dataset into `out` (layout above) and return its summary. `workers`
    processes render the videos and clips; the bytes are the same for any number."""
    width, height = parse_size(size)
    _check_counts(videos, benchmark_clips, validation_clips, seed, fps)
    out = Path(out)
    _prepare(out, overwrite)
    started = time.perf_counter()
    clips = {"test": benchmark_clips, "validation": validation_clips}
    bar = tqdm(
        total=videos + sum(clips.values()), desc="synth", unit="video", disable=None if progress else True
    )
    manifest, truths = [], []
    with ExitStack() as stack:
        mapper: Callable[..., Iterable[Any]] = map
        if workers > 1:  # spawned: forking a process that may be running torch's threads can deadlock
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            mapper = stack.enter_context(pool).map
        rendered = mapper(
            _render_video,
            repeat(out, videos),
            repeat(seed, videos),
            range(videos),
            repeat((width, height, fps), videos),
        )
        for entry, truth in rendered:
            manifest.append(entry)
            truths.append(truth)
            bar.update()
        benchmark = {
            split: write_benchmark(
                out / folder, clips[split], seed, width, height, fps, bar.update, split, mapper
            )
            for split, folder in SPLIT_FOLDERS.items()
            if clips[split] or split == "test"
        }
    bar.close()
    write_text_atomic(out / "ground_truth.jsonl", "".join(json.dumps(t) + "\n" for t in truths))
    write_text_atomic(
        out / "manifest.jsonl", "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in manifest)
    )
    steps = [step for truth in truths for step in truth["steps"]]
    summary = {
        "version": VERSION,
        "seed": seed,
        "videos": videos,
        "width": width,
        "height": height,
        "fps": fps,
        "seconds_of_video": round(sum(truth["duration"] for truth in truths), 3),
        "steps": len(steps),
        "verbs": len(Counter(step["verb"] for step in steps)),
        "cuts": sum(len(truth["cuts"]) for truth in truths),
        "benchmark_clips": benchmark["test"]["clips"],
        "held_out_classes": len(HELD_OUT_SPLITS["test"]),
        "validation_clips": validation_clips,
        "validation_classes": len(HELD_OUT_SPLITS["validation"]),
        "describer": DESCRIBER_ID,
    }
    write_json_atomic(out / "summary.json", summary)
    return {**summary, "out": str(out), "elapsed_s": time.perf_counter() - started}


def format_summary(summary: dict[str, Any]) -> str:
    return (
        f"SynthActions: {summary['videos']} videos ({summary['seconds_of_video'] / 60:.1f} min, "
        f"{summary['steps']} steps of {summary['verbs']} verbs, {summary['cuts']} cuts) and "
        f"{summary['benchmark_clips']} test clips of {summary['held_out_classes']} held-out classes, "
        f"{summary['validation_clips']} validation clips of {summary['validation_classes']} others, "
        f"{summary['width']}x{summary['height']} at {summary['fps']:g} fps, seed {summary['seed']}, "
        f"in {summary['elapsed_s']:.1f} s -> {summary['out']}"
    )
