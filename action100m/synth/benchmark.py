"""The trimmed-clip zero-shot benchmark, in the Something-Something v2 file layout.

Each clip is one step whose verb x object composition is held out of every training video
(`world.HELD_OUT`), so a model is scored on compositions it has never seen. As in SSv2 the labels file
maps a class name (the template without brackets) to a string id, ids follow the sorted names, and the
validation list holds {id, label, template, placeholders} with `label` the lower-cased filled template.
Clips are `20bn-something-something-v2/<id>.mp4`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from action100m.synth.render import render_video
from action100m.synth.sampler import sample_clip_spec
from action100m.synth.world import HELD_OUT, VERB_TEXT, object_name
from action100m.utils.atomic import write_json_atomic

LABELS_FILE = "something-something-v2-labels.json"
VALIDATION_FILE = "something-something-v2-validation.json"
VIDEO_DIR = "20bn-something-something-v2"
# Spawn keys of the benchmark's random streams, apart from the videos' (see generate.py).
CLIP_STREAM, ORDER_STREAM = 1, 2


def template(verb: str, colour: str, shape: str) -> str:
    """E.g. "Rotate [the blue square] clockwise": the object is the placeholder."""
    text = VERB_TEXT[verb][0].format(obj=f"[{object_name(colour, shape)}]")
    return text[0].upper() + text[1:]


def class_name(verb: str, colour: str, shape: str) -> str:
    return template(verb, colour, shape).replace("[", "").replace("]", "")


def labels() -> dict[str, str]:
    """Class name -> id ("0", "1", ...), over every held-out composition, in sorted order."""
    return {
        name: str(i) for i, name in enumerate(sorted(class_name(*composition) for composition in HELD_OUT))
    }


def write_benchmark(
    out: Path,
    clips: int,
    seed: int,
    width: int,
    height: int,
    fps: float,
    on_clip: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Render `clips` clips into `out` and write the labels and validation files.

    Classes are dealt round-robin in a seeded order, so any number of clips covers them evenly, and
    clip k is the same whatever the number of clips."""
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ORDER_STREAM,))).permutation(
        len(HELD_OUT)
    )
    entries = []
    for k in range(clips):
        verb, colour, shape = HELD_OUT[int(order[k % len(HELD_OUT)])]
        clip_id = str(k + 1)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(CLIP_STREAM, k)))
        spec = sample_clip_spec(rng, clip_id, verb, colour, shape, fps, width, height)
        render_video(spec, out / VIDEO_DIR / f"{clip_id}.mp4")
        text = template(verb, colour, shape)
        entries.append(
            {
                "id": clip_id,
                "label": text.replace("[", "").replace("]", "").lower(),
                "template": text,
                "placeholders": [object_name(colour, shape)],
            }
        )
        on_clip()
    write_json_atomic(out / LABELS_FILE, labels())
    write_json_atomic(out / VALIDATION_FILE, entries)
    return {"clips": clips, "classes": len(HELD_OUT)}
