"""Sampling SynthActions specs: whole instructional videos, and single-step clips for the benchmark.

Every step is a continuous action that is visible from its first half second on (a minimum speed per
verb), and steps are separated by still pauses of at least 1 s, so segmentation can be scored at a
0.5 s tolerance. Held-out verb x object compositions never occur in a sampled video.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np

from action100m.synth.world import (
    BACKGROUNDS,
    COLOURS,
    EXTENT,
    GOALS,
    SHAPES,
    SIZES,
    SKINS,
    TABLES,
    TEXTURES,
    VERBS,
    ObjectSpec,
    ObjectState,
    Scene,
    Step,
    Task,
    VideoSpec,
    advance,
    goal_of,
    is_held_out,
    object_name,
    target_colour,
)

PAUSE_SECONDS = (1.0, 2.0)  # still gap between two steps (and idle lead-in / lead-out)
CUT_PAUSE_SECONDS = (1.0, 1.5)  # still on each side of a cut
CUT_PROBABILITY = 0.3  # of a cut to a new scene between two tasks
MAX_SCENES = 3
HAND_PROBABILITY = 0.85  # instructional videos mostly show the hands at work
TABLE_PROBABILITY = 0.6
HIDDEN_PROBABILITY = 0.15  # an object that enters its scene invisible, to be faded in
MARGIN = 0.03  # kept free at the frame's edges, as a fraction of the side
GAP = 0.05  # kept free between two objects
PLACE_GAP = 0.12  # between objects entering a scene: room to move and grow
MIN_SCALE, MAX_SCALE = 0.6, 1.7
GOAL_WEIGHT = 4.0  # a task's steps mostly serve its goal
# Fades and colour changes have no motion to show them: they go fast enough to be a quarter done
# within half a second, the tolerance segmentation is scored at.
FADE_SECONDS = (1.0, 2.0)


class _Geometry:
    """Object extents as fractions of width and height (radii are fractions of the short side)."""

    def __init__(self, width: int, height: int):
        short = min(width, height)
        self.sx, self.sy = short / width, short / height

    def extent(self, state: ObjectState, scale: float | None = None) -> tuple[float, float]:
        radius = SIZES[state.size] * (state.scale if scale is None else scale) * EXTENT
        return radius * self.sx, radius * self.sy

    def room(self, state: ObjectState, direction: str) -> float:
        """Free distance from the object to the frame's edge in `direction`."""
        ex, ey = self.extent(state)
        return {
            "left": state.x - ex,
            "right": 1.0 - state.x - ex,
            "up": state.y - ey,
            "down": 1.0 - state.y - ey,
        }[direction] - MARGIN

    def clear(
        self, box: tuple[float, float, float, float], others: list[ObjectState], gap: float = GAP
    ) -> bool:
        """Whether the box (x0, y0, x1, y1) keeps `gap` from every other object."""
        x0, y0, x1, y1 = box
        for other in others:
            ex, ey = self.extent(other)
            if (
                x0 < other.x + ex + gap
                and other.x - ex - gap < x1
                and y0 < other.y + ey + gap
                and other.y - ey - gap < y1
            ):
                return False
        return True

    def box(self, state: ObjectState, scale: float | None = None) -> tuple[float, float, float, float]:
        ex, ey = self.extent(state, scale)
        return state.x - ex, state.y - ey, state.x + ex, state.y + ey


def _fits(
    geometry: _Geometry, box: tuple[float, float, float, float], others: list[ObjectState], gap: float = GAP
) -> bool:
    """Whether the box lies inside the frame's margins and `gap` away from every other object."""
    x0, y0, x1, y1 = box
    return min(x0, y0) >= MARGIN and max(x1, y1) <= 1.0 - MARGIN and geometry.clear(box, others, gap)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _pick(rng: np.random.Generator, options: Any) -> Any:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _r4(value: float) -> float:
    return round(float(value), 4)


def _frames(seconds: float, fps: float) -> int:
    """A duration in whole frames, never under 1 s (at 12.5 fps, 12 frames would be)."""
    return max(math.ceil(fps), round(seconds * fps))


def plan_step(
    rng: np.random.Generator, verb: str, state: ObjectState, others: list[ObjectState], geometry: _Geometry
) -> tuple[dict[str, float], float] | None:
    """Parameters and duration (s) of `verb` on an object in `state`, or None where it cannot be done
    (no room, nothing to fade in, a colour it already has or that would clash with another object)."""
    if verb == "fade in" or not state.visible:
        return ({}, _uniform(rng, FADE_SECONDS)) if verb == "fade in" and not state.visible else None
    first, _, rest = verb.partition(" ")
    if first == "move":
        room = min(geometry.room(state, rest), 0.4)
        if room < 0.12:
            return None
        speed = _uniform(rng, (0.05, 0.12))  # frame sides per second: >= 3 px in 0.5 s at 128 px
        distance = float(np.clip(speed * _uniform(rng, (1.0, 8.0)), 0.12, room))
        dx = {"left": -distance, "right": distance}.get(rest, 0.0)
        dy = {"up": -distance, "down": distance}.get(rest, 0.0)
        start, end = geometry.box(state), geometry.box(replace(state, x=state.x + dx, y=state.y + dy))
        swept = (min(start[0], end[0]), min(start[1], end[1]), max(start[2], end[2]), max(start[3], end[3]))
        if not geometry.clear(swept, others):
            return None
        return {"dx": _r4(dx), "dy": _r4(dy)}, float(np.clip(distance / speed, 1.0, 8.0))
    if first == "rotate":
        seconds = _uniform(rng, (1.0, 8.0))
        degrees = _uniform(rng, (60.0, 120.0)) * seconds
        return {"degrees": _r4(degrees if rest == "clockwise" else -degrees)}, seconds
    if verb in ("grow", "shrink"):
        rate = _uniform(rng, (0.15, 0.3))  # log-scale per second
        wanted = min(math.exp(rate * _uniform(rng, (1.0, 4.0))), 1.8)
        limit = MAX_SCALE / state.scale if verb == "grow" else state.scale / MIN_SCALE
        factor = min(wanted, limit)
        if verb == "grow":  # the largest factor up to the wanted one that still fits
            fitting = [
                f
                for f in np.linspace(factor, 1.25, 4)
                if _fits(geometry, geometry.box(state, state.scale * f), others)
            ]
            factor = float(fitting[0]) if fitting else 0.0
        if factor < 1.25:
            return None
        seconds = max(1.0, math.log(factor) / rate)
        return {"factor": _r4(factor if verb == "grow" else 1.0 / factor)}, seconds
    if first == "change":
        colour = target_colour(verb)
        if colour == state.colour or colour in {other.colour for other in others}:
            return None
        return {}, _uniform(rng, FADE_SECONDS)
    if verb == "bounce":
        height = min(_uniform(rng, (0.08, 0.14)), geometry.room(state, "up"))
        if height < 0.06:
            return None
        seconds = _uniform(rng, (1.0, 6.0))
        hops = max(1, round(seconds / _uniform(rng, (0.6, 1.0))))  # hop period 0.6-1 s: up within 0.5 s
        return {"height": _r4(height), "hops": hops}, seconds
    if verb == "shake":
        amplitude = _uniform(rng, (0.03, 0.05))
        if min(geometry.room(state, "left"), geometry.room(state, "right")) < amplitude:
            return None
        seconds = _uniform(rng, (1.0, 5.0))
        return {"amplitude": _r4(amplitude), "cycles": max(2, round(2.0 * seconds))}, seconds
    if verb == "fade out":
        return {}, _uniform(rng, FADE_SECONDS)
    if verb == "flip":
        return {}, _uniform(rng, (1.0, 3.0))
    raise ValueError(f"unknown verb {verb!r}")


def _place(
    rng: np.random.Generator, specs: list[ObjectSpec], geometry: _Geometry, spec: ObjectSpec
) -> ObjectSpec | None:
    """`spec` moved to a random free position, or None when the scene has no room for it."""
    placed = [ObjectState.initial(other) for other in specs]
    for _ in range(50):
        candidate = replace(spec, x=_r4(rng.uniform(0.15, 0.85)), y=_r4(rng.uniform(0.2, 0.8)))
        if _fits(geometry, geometry.box(ObjectState.initial(candidate)), placed, PLACE_GAP):
            return candidate
    return None


def sample_scene(
    rng: np.random.Generator,
    start: int,
    geometry: _Geometry,
    include: tuple[str, str] | None = None,
    include_hidden: bool = False,
    after: Scene | None = None,
) -> Scene:
    """A scene of 1-3 objects of distinct colours; `include` = (colour, shape) puts that object first.
    A scene cut to from `after` has another backdrop, so the cut is plain to see."""
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    count = int(rng.integers(1, 4))
    wanted = []
    if include is not None:
        colours.remove(include[0])
        wanted.append(ObjectSpec(include[0], include[1], _pick(rng, SIZES), 0.5, 0.5, not include_hidden))
    for colour in colours[: count - len(wanted)]:
        shape = _pick(rng, SHAPES)
        # Hidden objects must be revealable: fade-in of that object may not be a held-out composition.
        hidden = (
            include is None
            and rng.random() < HIDDEN_PROBABILITY
            and not is_held_out("fade in", colour, shape)
        )
        wanted.append(ObjectSpec(colour, shape, _pick(rng, SIZES), 0.5, 0.5, not hidden))
    objects: list[ObjectSpec] = []
    for spec in wanted:
        placed = _place(rng, objects, geometry, spec)
        if placed is not None:
            objects.append(placed)
    if not any(obj.visible for obj in objects) and include is None:
        objects[0] = replace(objects[0], visible=True)
    return Scene(
        start=start,
        background=_pick(rng, [name for name in BACKGROUNDS if after is None or name != after.background]),
        texture=_pick(rng, TEXTURES),
        table=_pick(rng, TABLES) if rng.random() < TABLE_PROBABILITY else None,
        table_top=_r4(rng.uniform(0.4, 0.6)),
        hand=_pick(rng, SKINS) if rng.random() < HAND_PROBABILITY else None,
        objects=tuple(objects),
    )


def _choose_step(
    rng: np.random.Generator, states: list[ObjectState], obj: int, goal: str, geometry: _Geometry
) -> tuple[str, dict[str, float], float]:
    """A verb for the object, its parameters and duration. There is always one: a hidden object can be
    faded in, and a visible one rotated or flipped (the held-out diagonal never takes all three)."""
    state = states[obj]
    others = [other for i, other in enumerate(states) if i != obj]
    options, weights = [], []
    for verb in VERBS:
        if is_held_out(verb, state.colour, state.shape):
            continue
        # Never hide an object that could not be brought back without a held-out composition.
        if verb == "fade out" and is_held_out("fade in", state.colour, state.shape):
            continue
        plan = plan_step(rng, verb, state, others, geometry)
        if plan is not None:
            options.append((verb, *plan))
            # The six colour changes together are about as likely as one other verb.
            share = 1.0 / (len(COLOURS) - 1) if target_colour(verb) else 1.0
            weights.append(share * (GOAL_WEIGHT if goal_of(verb) == goal else 1.0))
    probabilities = np.asarray(weights) / sum(weights)
    return options[int(rng.choice(len(options), p=probabilities))]


def _task_sizes(rng: np.random.Generator, steps: int) -> list[int]:
    """Split `steps` into tasks of 2-4 steps (a lone 3 stays one task)."""
    sizes = []
    while steps > 4:
        size = int(rng.integers(2, 5))
        if steps - size == 1:
            size -= 1
        sizes.append(size)
        steps -= size
    return sizes + [steps]


def sample_video_spec(
    rng: np.random.Generator, uid: str, fps: float = 10.0, width: int = 128, height: int = 128
) -> VideoSpec:
    """An instructional video: 3-12 steps grouped into tasks of 2-4 steps on one object each, still
    pauses between steps, and now and then a cut to a new scene between two tasks."""
    geometry = _Geometry(width, height)

    def frames(bounds: tuple[float, float]) -> int:
        return _frames(_uniform(rng, bounds), fps)

    scenes = [sample_scene(rng, 0, geometry)]
    states = [ObjectState.initial(obj) for obj in scenes[0].objects]
    steps: list[Step] = []
    tasks: list[Task] = []
    cursor = frames(PAUSE_SECONDS)
    previous_obj = None
    for task_index, size in enumerate(_task_sizes(rng, 3 + int(rng.binomial(9, 1 / 3)))):
        if task_index and len(scenes) < MAX_SCENES and rng.random() < CUT_PROBABILITY:
            cursor += frames(CUT_PAUSE_SECONDS)
            scenes.append(sample_scene(rng, cursor, geometry, after=scenes[-1]))
            states = [ObjectState.initial(obj) for obj in scenes[-1].objects]
            cursor += frames(CUT_PAUSE_SECONDS)
        elif task_index:
            cursor += frames(PAUSE_SECONDS)
        candidates = [i for i in range(len(states)) if i != previous_obj] or [0]
        obj = previous_obj = _pick(rng, candidates)
        goal = "show" if not states[obj].visible else _pick(rng, GOALS)
        start_name, first_step = object_name(states[obj].colour, states[obj].shape), len(steps)
        for k in range(size):
            verb, params, seconds = _choose_step(rng, states, obj, goal, geometry)
            if k:
                cursor += frames(PAUSE_SECONDS)
            length = _frames(seconds, fps)
            state = states[obj]
            steps.append(
                Step(cursor, cursor + length, len(scenes) - 1, obj, verb, state.colour, state.shape, params)
            )
            states[obj] = advance(state, verb, params, 1.0)
            cursor += length
        task_steps = tuple(range(first_step, len(steps)))
        goals = Counter(goal_of(steps[i].verb) for i in task_steps)
        tasks.append(Task(GOALS[goals.most_common(1)[0][0]].format(obj=start_name), task_steps))
    cursor += frames(PAUSE_SECONDS)
    return VideoSpec(uid, float(fps), cursor, width, height, tuple(scenes), tuple(steps), tuple(tasks))


def sample_clip_spec(
    rng: np.random.Generator,
    uid: str,
    verb: str,
    colour: str,
    shape: str,
    fps: float = 10.0,
    width: int = 128,
    height: int = 128,
) -> VideoSpec:
    """A trimmed clip of exactly one step: `verb` done to the (colour, shape) object in a fresh scene."""
    geometry = _Geometry(width, height)
    for _ in range(200):
        scene = sample_scene(rng, 0, geometry, include=(colour, shape), include_hidden=verb == "fade in")
        if not scene.objects or scene.objects[0].colour != colour:
            continue
        states = [ObjectState.initial(obj) for obj in scene.objects]
        plan = plan_step(rng, verb, states[0], states[1:], geometry)
        if plan is None:
            continue
        params, seconds = plan
        length = _frames(seconds, fps)
        step = Step(0, length, 0, 0, verb, colour, shape, params)
        task = Task(GOALS[goal_of(verb)].format(obj=object_name(colour, shape)), (0,))
        return VideoSpec(uid, float(fps), length, width, height, (scene,), (step,), (task,))
    raise RuntimeError(f"no scene found where one can {verb} the {colour} {shape}")
