"""What a rerun of the build may skip. Each stage's output is cached per video under OUT/work, keyed
by a hash of the config it depends on (`stage_hashes`); a shard is done once written with the hash of
everything that went into it. Keys cover what a stage outputs, never where or how fast it is served,
so a build whose servers moved continues with every cache. `check_previous` refuses to continue a
build under another input or config unless the run names the changed stages or forces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from action100m.backends.config import output_settings
from action100m.dataset.shards import ShardSet, stable_hash
from action100m.errors import ConfigError
from data_build.config import STAGES, BuildConfig


def short_hash(obj: Any) -> str:
    """16 hex digits of a stable hash of `obj` as sorted JSON (what is not JSON counts as its str)."""
    return stable_hash(json.dumps(obj, sort_keys=True, default=str))[:16]


def stage_hashes(cfg: BuildConfig, input_hash: str) -> dict[str, str]:
    """The cache key of each stage, of the sample videos and of the shards; a stage's key covers its
    upstream stages' keys."""
    # What each stage outputs, not where or how fast it runs: a moved server, other timeouts or
    # batch sizes continue the build with every cache (the refine node cache follows the same rule).
    segment = short_hash(output_settings(cfg.segment))
    caption = short_hash([segment, output_settings(cfg.caption)])
    refine = short_hash([caption, output_settings(cfg.refine)])
    video = short_hash(output_settings(cfg.sample_video))
    shards = short_hash([input_hash, refine, video, cfg.samples_per_shard, cfg.shard_prefix])
    return {
        "input": input_hash,
        "segment": segment,
        "caption": caption,
        "refine": refine,
        "video": video,
        "shards": shards,
    }


def check_previous(out: Path, cfg: BuildConfig, hashes: dict[str, str]) -> None:
    """Refuse to mix runs: the input and every stage's config must match the previous run's, except
    the stages named in `stages`, unless `force`."""
    previous_file = out / "build.json"
    if not previous_file.is_file() or cfg.force:
        return
    previous = json.loads(previous_file.read_text(encoding="utf-8"))["hashes"]
    allowed = set(cfg.stages or ())
    for key in ("input", "video", *STAGES):
        if previous.get(key) == hashes[key] or key in allowed:
            continue
        if key in STAGES and any(stage in allowed for stage in STAGES[: STAGES.index(key)]):
            continue  # an upstream stage is being redone, so this one's hash moves with it
        what = "the input" if key == "input" else f"the {key} config"
        raise ConfigError(
            f"output {out}: {what} differs from the previous build's; pass stages=[{key}] to "
            f"redo that stage, or force=true to rebuild with the new config"
        )


def read_cached(path: Path, retry_failed: bool) -> dict | None:
    """A stage's cached output for one video; None when the stage must run (nothing cached, or a
    cached failure while `retry_failed`)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return None if (retry_failed and data.get("failure")) else data


def shard_skipped(shard_set: ShardSet, index: int, cfg: BuildConfig, shards_hash: str) -> bool:
    """Whether this run leaves shard `index` as it is: done under `shards_hash`, and not a shard with
    failures that `retry_failed` rebuilds."""
    marker = shard_set.marker(index)
    redo_failed = cfg.retry_failed and marker is not None and marker["stats"]["failures"] > 0
    return shard_set.is_done(index, shards_hash) and not redo_failed
