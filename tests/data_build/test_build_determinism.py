"""Same input and config, same bytes: whatever the thread count and however the segmentation batches its
windows (a serving setting, left out of the cache keys, so it must not change what is built)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from action100m.synth.generate import generate_dataset

ROOT = Path(__file__).resolve().parents[2]


def build(manifest: Path, out: Path, threads: int, *overrides: str) -> dict[str, bytes]:
    # A process per build: torch reads its thread count once, at start-up, from OMP_NUM_THREADS.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "data_build/build.py", f"input={manifest}", f"output={out}", "build=demo"]
    done = subprocess.run(
        [*command, "samples_per_shard=3", "progress=false", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


@pytest.mark.slow
def test_shards_are_the_same_bytes_at_one_and_two_threads_and_any_window_batch(tmp_path):
    generate_dataset(tmp_path / "synth", videos=6, seed=11)
    manifest = tmp_path / "synth" / "manifest.jsonl"
    two = build(manifest, tmp_path / "two", 2)
    one = build(manifest, tmp_path / "one", 1, "segment.batch_windows=1", "segment.decode_chunk=7")
    assert len(two) == 2 and two == one
