"""The ground-truth describer: what a perfect captioner would say about a span of a SynthActions video.

It stands in for the VLM captioners (frame caption, segment caption, action label) in the CPU demo,
where no model weights can be downloaded. It reads the ground truth, not the pixels, so it works only
on SynthActions videos; records it captions name `DESCRIBER_ID` in their provenance.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from action100m.errors import Action100MError
from action100m.synth.world import (
    COLOURS,
    SIZES,
    VERB_TEXT,
    ObjectState,
    Scene,
    VideoSpec,
    action_label,
    frame_state,
    from_truth,
    object_name,
)
from action100m.video.sampling import time_to_index

DESCRIBER_ID = "synthactions-ground-truth-describer-v1"
NOT_APPLICABLE = "N/A"
TEXTURE_WORDS = {"plain": "plain", "gradient": "shaded", "stripes": "striped", "checker": "checkered"}


def _nearest_colour(rgb: tuple[float, float, float]) -> str:
    """The palette name a viewer would give a colour caught halfway through a change."""
    names = list(COLOURS)
    distances = [np.sum((np.asarray(rgb) - np.asarray(COLOURS[name])) ** 2) for name in names]
    return names[int(np.argmin(distances))]


def _place(state: ObjectState) -> str:
    column = "left" if state.x < 0.38 else "right" if state.x > 0.62 else ""
    row = "top" if state.y < 0.38 else "bottom" if state.y > 0.62 else ""
    if row and column:
        return f"at the {row} {column}"
    if row or column:
        return f"{'at' if row else 'on'} the {row or column}"
    return "in the centre"


def _object_phrase(state: ObjectState) -> str:
    radius = SIZES[state.size] * state.scale
    size = "small " if radius < 0.1 else "large " if radius > 0.12 else ""
    faint = "faint " if state.alpha < 0.5 else ""
    return f"a {faint}{size}{_nearest_colour(state.rgb)} {state.shape} {_place(state)}"


def _setting(scene: Scene) -> str:
    backdrop = f"a {TEXTURE_WORDS[scene.texture]} {scene.background} background"
    return f"on a {scene.table} table in front of {backdrop}" if scene.table else f"against {backdrop}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class GroundTruthDescriber:
    """Captions and action labels for spans of SynthActions videos, read from their ground truth."""

    model_id = DESCRIBER_ID

    def __init__(self, specs: Iterable[VideoSpec]):
        self._specs = {spec.uid: spec for spec in specs}

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike) -> GroundTruthDescriber:
        """From a `ground_truth.jsonl` written by `action100m synth`."""
        with open(path, encoding="utf-8") as handle:
            return cls(from_truth(json.loads(line)) for line in handle if line.strip())

    @classmethod
    def from_dir(cls, synth_dir: str | os.PathLike) -> GroundTruthDescriber:
        return cls.from_jsonl(Path(synth_dir) / "ground_truth.jsonl")

    def _spec(self, video_uid: str) -> VideoSpec:
        try:
            return self._specs[video_uid]
        except KeyError:
            raise Action100MError(
                f"video {video_uid}: not a SynthActions video known to the ground-truth describer"
            ) from None

    def _frame(self, spec: VideoSpec, seconds: float) -> int:
        return time_to_index(seconds, spec.fps, spec.num_frames)

    def _overlaps(self, spec: VideoSpec, start: float, end: float) -> list[tuple[int, float]]:
        """(step index, seconds of overlap) of the steps a viewer would see in [start, end): at least
        half of the step, or half a second of it."""
        if not end > start:
            raise ValueError(f"empty span [{start}, {end}]")
        seen = []
        for index, step in enumerate(spec.steps):
            step_start, step_end = spec.time(step.start), spec.time(step.end)
            overlap = min(end, step_end) - max(start, step_start)
            if overlap >= min(0.5, 0.5 * (step_end - step_start)):
                seen.append((index, overlap))
        return seen

    def frame_caption(self, video_uid: str, seconds: float) -> str:
        """A still image's caption: the visible objects, where they are, the setting and the hand."""
        spec = self._spec(video_uid)
        state = frame_state(spec, self._frame(spec, seconds))
        scene = spec.scenes[state.scene]
        visible = [_object_phrase(obj) for obj in state.objects if obj.visible]
        if not visible:
            return _sentence(f"an empty scene {_setting(scene)}")
        caption = _sentence(f"{_join(visible)} {_setting(scene)}")
        if state.step is not None and scene.hand:
            held = state.objects[spec.steps[state.step].obj]
            caption += f" A hand holds the {_nearest_colour(held.rgb)} {held.shape} from below."
        return caption

    def segment_caption(self, video_uid: str, start: float, end: float) -> str:
        """A video caption: per scene in the span, what is there and each action seen, in order."""
        spec = self._spec(video_uid)
        steps = [spec.steps[index] for index, _ in self._overlaps(spec, start, end)]
        sentences: list[str] = []
        for index, scene in enumerate(spec.scenes):
            first, last = (spec.time(frame) for frame in spec.scene_frames(index))
            if min(end, last) <= max(start, first):
                continue
            state = frame_state(spec, self._frame(spec, max(start, first)))
            objects = [_object_phrase(obj) for obj in state.objects if obj.visible]
            form = 1 if scene.hand else 2  # done by a hand, or by the object itself
            actions = [
                VERB_TEXT[step.verb][form].format(obj=object_name(step.colour, step.shape))
                for step in steps
                if step.scene == index
            ]
            if sentences:
                sentences.append("The video cuts to another scene.")
            what = _join(objects) if objects else "an empty scene"
            sentences.append(
                _sentence(f"{what} {_setting(scene)}; {', then '.join(actions) or 'nothing moves'}")
            )
        return " ".join(sentences)

    def action_label(self, video_uid: str, start: float, end: float) -> str:
        """The step's label when one step fills most of the span, the task's name when several steps
        of it do, and "N/A" when nothing happens."""
        spec = self._spec(video_uid)
        seen = self._overlaps(spec, start, end)
        if not seen:
            return NOT_APPLICABLE
        index, overlap = max(seen, key=lambda item: item[1])
        step = spec.steps[index]
        if len(seen) == 1 or overlap >= 0.5 * (end - start):
            return action_label(step.verb, step.colour, step.shape)
        by_task = {task.name: sum(overlap for i, overlap in seen if i in task.steps) for task in spec.tasks}
        return max(by_task, key=lambda name: by_task[name])

    def describe(self, video_uid: str, start: float, end: float) -> dict[str, str]:
        """All three for one node: the frame caption is of the span's middle frame."""
        return {
            "frame_caption": self.frame_caption(video_uid, (start + end) / 2),
            "segment_caption": self.segment_caption(video_uid, start, end),
            "action_label": self.action_label(video_uid, start, end),
        }
