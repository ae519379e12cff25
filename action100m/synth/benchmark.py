"""The trimmed-clip zero-shot benchmark, in the Something-Something v2 file layout.

Each clip is one step whose verb x object composition is held out of every training video, so a model
is scored on compositions it has never seen. There are two splits of disjoint compositions
(`world.HELD_OUT_SPLITS`): "test", what is reported, and "validation", what choices are made on. As in SSv2 the labels file
maps a class name (the template without brackets) to a string id, ids follow the sorted names, and the
validation list holds {id, label, template, placeholders} with `label` the lower-cased filled template.
Clips are `20bn-something-something-v2/<id>.mp4`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from action100m.synth.render import render_video
from action100m.synth.sampler import sample_clip_spec
from action100m.synth.world import HELD_OUT_SPLITS, VERB_TEXT, object_name
from action100m.utils.atomic import write_json_atomic

LABELS_FILE = "something-something-v2-labels.json"
VALIDATION_FILE = "something-something-v2-validation.json"
VIDEO_DIR = "20bn-something-something-v2"
# Spawn keys of each split's random streams (clips, class order), apart from the videos' (generate.py).
STREAMS = {"test": (1, 2), "validation": (4, 5)}


def template(verb: str, colour: str, shape: str) -> str:
    """E.g. "Rotate [the blue square] clockwise": the object is the placeholder."""
    text = VERB_TEXT[verb][0].format(obj=f"[{object_name(colour, shape)}]")
    return text[0].upper() + text[1:]


def class_name(verb: str, colour: str, shape: str) -> str:
    return template(verb, colour, shape).replace("[", "").replace("]", "")


def labels(split: str = "test") -> dict[str, str]:
    """Class name -> id ("0", "1", ...), over the split's held-out compositions, in sorted order."""
    names = sorted(class_name(*composition) for composition in HELD_OUT_SPLITS[split])
    return {name: str(i) for i, name in enumerate(names)}


def _render_clip(
    out: Path, seed: int, split: str, k: int, composition: tuple[str, str, str], size: tuple[int, int, float]
) -> dict[str, Any]:
    """Render clip k of `split` and return its entry in the validation file."""
    verb, colour, shape = composition
    width, height, fps = size
    clip_id = str(k + 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[split][0], k)))
    spec = sample_clip_spec(rng, clip_id, verb, colour, shape, fps, width, height)
    render_video(spec, out / VIDEO_DIR / f"{clip_id}.mp4")
    text = template(verb, colour, shape)
    return {
        "id": clip_id,
        "label": text.replace("[", "").replace("]", "").lower(),
        "template": text,
        "placeholders": [object_name(colour, shape)],
    }


def write_benchmark(
    out: Path,
    clips: int,
    seed: int,
    width: int,
    height: int,
    fps: float,
    on_clip: Callable[[], None] = lambda: None,
    split: str = "test",
    mapper: Callable[..., Iterable[Any]] = map,
) -> dict[str, int]:
    """Render `clips` clips of `split` into `out` and write the labels and validation files (the SSv2
    name of the file listing the clips, whichever split they are). `mapper` is `map` or a process
    pool's: every clip depends only on (seed, split, k).

    Classes are dealt round-robin in a seeded order, so any number of clips covers them evenly, and
    clip k is the same whatever the number of clips."""
    compositions = HELD_OUT_SPLITS[split]
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[split][1],))).permutation(
        len(compositions)
    )
    dealt = [compositions[int(order[k % len(compositions)])] for k in range(clips)]
    entries = []
    for entry in mapper(
        _render_clip,
        repeat(out, clips),
        repeat(seed, clips),
        repeat(split, clips),
        range(clips),
        dealt,
        repeat((width, height, fps), clips),
    ):
        entries.append(entry)
        on_clip()
    write_json_atomic(out / LABELS_FILE, labels(split))
    write_json_atomic(out / VALIDATION_FILE, entries)
    return {"clips": clips, "classes": len(compositions)}
