"""The SynthActions world: its vocabulary, the spec of one video (scenes, objects, steps, tasks) and the
state of every object at any frame.

A `VideoSpec` is plain data in frame units at its own fps, so every ground-truth boundary falls exactly
between two frames. render.py draws a spec, narration.py narrates it, describer.py describes it, and
`to_truth` / `from_truth` turn it into the ground-truth JSON line and back without loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

# Saturated hues a quarter-turn of the colour wheel apart, so colour survives 4:2:0 chroma and 32 px.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "orange": (245, 140, 30),
    "yellow": (240, 215, 50),
    "green": (50, 175, 70),
    "blue": (45, 95, 230),
    "purple": (150, 70, 200),
}
SHAPES = ("circle", "square", "triangle", "cross")
# Radius as a fraction of the frame's short side.
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.11, "large": 0.13}
EXTENT = 1.3  # farthest point of any shape from its centre, in radii (the triangle's apex)
# Desaturated, so every object colour stands out against every background.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "light grey": (200, 200, 196),
    "beige": (222, 212, 188),
    "slate": (96, 104, 116),
    "charcoal": (52, 54, 60),
    "pale blue": (176, 190, 206),
    "sage": (170, 182, 160),
}
TEXTURES = ("plain", "gradient", "stripes", "checker")
TABLES: dict[str, tuple[int, int, int]] = {"wooden": (142, 104, 72), "grey": (128, 128, 134)}
SKINS: dict[str, tuple[int, int, int]] = {
    "light": (236, 192, 160),
    "medium": (196, 144, 104),
    "dark": (128, 86, 58),
}

# verb -> (imperative, done by a hand, done by the object itself); {obj} is e.g. "the red square".
_MOTIONS: dict[str, tuple[str, str, str]] = {
    "move left": ("move {obj} left", "a hand moves {obj} to the left", "{obj} moves to the left"),
    "move right": ("move {obj} right", "a hand moves {obj} to the right", "{obj} moves to the right"),
    "move up": ("move {obj} up", "a hand lifts {obj} up", "{obj} moves up"),
    "move down": ("move {obj} down", "a hand pushes {obj} down", "{obj} moves down"),
    "rotate clockwise": (
        "rotate {obj} clockwise",
        "a hand rotates {obj} clockwise",
        "{obj} rotates clockwise",
    ),
    "rotate anticlockwise": (
        "rotate {obj} anticlockwise",
        "a hand rotates {obj} anticlockwise",
        "{obj} rotates anticlockwise",
    ),
    "grow": ("make {obj} bigger", "a hand makes {obj} bigger", "{obj} grows bigger"),
    "shrink": ("make {obj} smaller", "a hand makes {obj} smaller", "{obj} shrinks"),
    "fade in": ("fade in {obj}", "a hand makes {obj} appear", "{obj} fades in"),
    "fade out": ("fade out {obj}", "a hand makes {obj} disappear", "{obj} fades out"),
    "bounce": ("bounce {obj}", "a hand bounces {obj}", "{obj} bounces"),
    "shake": ("shake {obj}", "a hand shakes {obj}", "{obj} shakes"),
    "flip": ("flip {obj} over", "a hand flips {obj} over", "{obj} flips over"),
}
_RECOLOURS: dict[str, tuple[str, str, str]] = {
    f"change colour to {c}": (
        f"change the colour of {{obj}} to {c}",
        f"a hand changes the colour of {{obj}} to {c}",
        f"{{obj}} changes colour to {c}",
    )
    for c in COLOURS
}
VERB_TEXT: dict[str, tuple[str, str, str]] = {**_MOTIONS, **_RECOLOURS}
VERBS = tuple(VERB_TEXT)
OBJECTS = tuple((colour, shape) for colour in COLOURS for shape in SHAPES)

# A task is named after the goal most of its steps serve; a verb's goal follows from its first word.
GOALS: dict[str, str] = {
    "arrange": "arrange {obj}",
    "turn": "turn {obj} around",
    "resize": "resize {obj}",
    "repaint": "repaint {obj}",
    "show": "show and hide {obj}",
    "play": "play with {obj}",
}
_GOAL_OF_FIRST_WORD = {
    "move": "arrange",
    "rotate": "turn",
    "flip": "turn",
    "grow": "resize",
    "shrink": "resize",
    "change": "repaint",
    "fade": "show",
    "bounce": "play",
    "shake": "play",
}


def target_colour(verb: str) -> str | None:
    return verb.removeprefix("change colour to ") if verb.startswith("change colour to ") else None


def goal_of(verb: str) -> str:
    return _GOAL_OF_FIRST_WORD[verb.split()[0]]


def object_name(colour: str, shape: str) -> str:
    return f"the {colour} {shape}"


def action_label(verb: str, colour: str, shape: str) -> str:
    """The class name of a verb x object composition, e.g. "rotate the blue square clockwise"."""
    return VERB_TEXT[verb][0].format(obj=object_name(colour, shape))


# The held-out diagonals of the verb x object grid, one in 16 cells each: the test split's and the
# validation split's. Every verb, colour and shape is present in training and in both splits.
HELD_OUT_DIAGONALS = {"test": 0, "validation": 8}


def held_out_split(verb: str, colour: str, shape: str) -> str | None:
    """The zero-shot split ("test" or "validation") a verb x object composition is reserved for, or None
    for a composition the training videos may show."""
    if target_colour(verb) == colour:  # not a composition: a colour change to the colour it already has
        return None
    diagonal = (5 * VERBS.index(verb) + OBJECTS.index((colour, shape))) % 16
    return next((split for split, d in HELD_OUT_DIAGONALS.items() if d == diagonal), None)


def is_held_out(verb: str, colour: str, shape: str) -> bool:
    """Compositions reserved for a zero-shot split and never shown in the training videos."""
    return held_out_split(verb, colour, shape) is not None


# The test split's 28 classes (chance 3.6%) are what the demo reports, scored once per run; the
# validation split's 27 are what every choice of the demo preset was made on.
HELD_OUT_SPLITS: dict[str, tuple[tuple[str, str, str], ...]] = {
    split: tuple(
        (verb, colour, shape)
        for verb in VERBS
        for colour, shape in OBJECTS
        if held_out_split(verb, colour, shape) == split
    )
    for split in HELD_OUT_DIAGONALS
}
HELD_OUT = HELD_OUT_SPLITS["test"]


# -- the spec --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """An object as it enters its scene; x, y are the centre as fractions of width and height."""

    colour: str
    shape: str
    size: str
    x: float
    y: float
    visible: bool = True


@dataclass(frozen=True)
class Scene:
    """What the camera sees from frame `start` until the next cut."""

    start: int
    background: str
    texture: str
    table: str | None  # None: no table
    table_top: float  # fraction of the height where the table begins
    hand: str | None  # skin tone of the hand actor; None: objects act by themselves
    objects: tuple[ObjectSpec, ...]


@dataclass(frozen=True)
class Step:
    """One action on one object during frames [start, end); colour/shape name the object at `start`."""

    start: int
    end: int
    scene: int
    obj: int
    verb: str
    colour: str
    shape: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    name: str
    steps: tuple[int, ...]


@dataclass(frozen=True)
class VideoSpec:
    uid: str
    fps: float
    num_frames: int
    width: int
    height: int
    scenes: tuple[Scene, ...]
    steps: tuple[Step, ...]
    tasks: tuple[Task, ...]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def time(self, frame: int) -> float:
        return round(frame / self.fps, 6)

    def frame(self, seconds: float) -> int:
        return round(seconds * self.fps)

    def scene_frames(self, index: int) -> tuple[int, int]:
        """[start, end) of scene `index`: from its cut to the next one."""
        end = self.scenes[index + 1].start if index + 1 < len(self.scenes) else self.num_frames
        return self.scenes[index].start, end

    def actor(self, step: Step) -> str:
        return "hand" if self.scenes[step.scene].hand else "none"


# -- object state at any frame ---------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectState:
    """How an object looks at one frame. `colour` is its name at rest; `rgb` blends during a recolour.
    `flip` is the horizontal scale, from 1 through 0 to -1 while flipping."""

    shape: str
    size: str
    colour: str
    rgb: tuple[float, float, float]
    x: float
    y: float
    scale: float = 1.0
    angle: float = 0.0  # degrees, clockwise on screen
    flip: float = 1.0
    alpha: float = 1.0

    @classmethod
    def initial(cls, spec: ObjectSpec) -> ObjectState:
        rgb = tuple(float(v) for v in COLOURS[spec.colour])
        return cls(
            spec.shape, spec.size, spec.colour, rgb, spec.x, spec.y, alpha=1.0 if spec.visible else 0.0
        )

    @property
    def visible(self) -> bool:
        return self.alpha > 0.0


def advance(state: ObjectState, verb: str, params: dict[str, float], p: float) -> ObjectState:
    """`state` after fraction `p` of the step; at p = 1 it is the rest state the next step starts from.

    Motions are linear in p so that a step starts and stops abruptly: its boundaries are where motion
    begins and ends, as in a real cut between actions."""
    if verb.startswith("move"):
        return replace(state, x=state.x + params["dx"] * p, y=state.y + params["dy"] * p)
    if verb.startswith("rotate"):
        return replace(state, angle=state.angle + params["degrees"] * p)
    if verb in ("grow", "shrink"):
        return replace(state, scale=state.scale * params["factor"] ** p)
    if verb == "fade in":
        return replace(state, alpha=p)
    if verb == "fade out":
        return replace(state, alpha=1.0 - p)
    if verb in ("bounce", "shake") and p >= 1.0:
        return state  # back where it began (exactly, not up to sin's rounding)
    if verb == "bounce":
        return replace(state, y=state.y - params["height"] * abs(math.sin(math.pi * params["hops"] * p)))
    if verb == "shake":
        return replace(state, x=state.x + params["amplitude"] * math.sin(2 * math.pi * params["cycles"] * p))
    if verb == "flip":
        return replace(state, flip=state.flip * (1.0 - 2.0 * p))
    target = target_colour(verb)
    if target is not None:
        new = COLOURS[target]
        rgb = tuple(a + (b - a) * p for a, b in zip(state.rgb, new, strict=True))
        return replace(state, rgb=rgb, colour=target if p >= 1.0 else state.colour)
    raise ValueError(f"unknown verb {verb!r}")


@dataclass(frozen=True)
class FrameState:
    scene: int
    objects: tuple[ObjectState, ...]
    step: int | None  # the step in progress, if any
    progress: float  # of that step, in (0, 1]


def scene_at(spec: VideoSpec, frame: int) -> int:
    return max(i for i, scene in enumerate(spec.scenes) if scene.start <= frame)


def frame_state(spec: VideoSpec, frame: int) -> FrameState:
    """Every object of the scene on screen at `frame`, replayed from the scene's start."""
    scene_index = scene_at(spec, frame)
    states = [ObjectState.initial(obj) for obj in spec.scenes[scene_index].objects]
    active, progress = None, 0.0
    for index, step in enumerate(spec.steps):
        if step.scene != scene_index or step.start > frame:
            continue
        # Frame k of an n-frame step shows progress (k + 1) / n: the first frame already moves and the
        # last shows the finished action.
        p = min(1.0, (frame - step.start + 1) / (step.end - step.start))
        states[step.obj] = advance(states[step.obj], step.verb, step.params, p)
        if frame < step.end:
            active, progress = index, p
    return FrameState(scene_index, tuple(states), active, progress)


# -- ground truth JSON -----------------------------------------------------------------------------


def to_truth(spec: VideoSpec) -> dict[str, Any]:
    """The ground-truth line of one video: times in seconds, plus everything needed to rebuild the spec."""
    steps = [
        {
            "start": spec.time(step.start),
            "end": spec.time(step.end),
            "verb": step.verb,
            "object": {"colour": step.colour, "shape": step.shape},
            "actor": spec.actor(step),
            "label": action_label(step.verb, step.colour, step.shape),
            "scene": step.scene,
            "object_index": step.obj,
            "params": dict(step.params),
        }
        for step in spec.steps
    ]
    tasks = [
        {
            "start": spec.time(spec.steps[task.steps[0]].start),
            "end": spec.time(spec.steps[task.steps[-1]].end),
            "name": task.name,
            "step_indices": list(task.steps),
        }
        for task in spec.tasks
    ]
    scenes = [
        {
            "start": spec.time(scene.start),
            "end": spec.time(spec.scene_frames(index)[1]),
            "background": scene.background,
            "texture": scene.texture,
            "table": scene.table,
            "table_top": scene.table_top,
            "hand": scene.hand,
            "objects": [vars(obj).copy() for obj in scene.objects],
        }
        for index, scene in enumerate(spec.scenes)
    ]
    return {
        "video_uid": spec.uid,
        "fps": spec.fps,
        "num_frames": spec.num_frames,
        "duration": spec.duration,
        "width": spec.width,
        "height": spec.height,
        "steps": steps,
        "tasks": tasks,
        "cuts": [spec.time(scene.start) for scene in spec.scenes[1:]],
        "scenes": scenes,
    }


def from_truth(truth: dict[str, Any]) -> VideoSpec:
    fps = float(truth["fps"])

    def frame(seconds: float) -> int:
        return round(seconds * fps)

    scenes = tuple(
        Scene(
            start=frame(s["start"]),
            background=s["background"],
            texture=s["texture"],
            table=s["table"],
            table_top=s["table_top"],
            hand=s["hand"],
            objects=tuple(ObjectSpec(**obj) for obj in s["objects"]),
        )
        for s in truth["scenes"]
    )
    steps = tuple(
        Step(
            start=frame(s["start"]),
            end=frame(s["end"]),
            scene=s["scene"],
            obj=s["object_index"],
            verb=s["verb"],
            colour=s["object"]["colour"],
            shape=s["object"]["shape"],
            params=dict(s["params"]),
        )
        for s in truth["steps"]
    )
    tasks = tuple(Task(t["name"], tuple(t["step_indices"])) for t in truth["tasks"])
    return VideoSpec(
        truth["video_uid"], fps, truth["num_frames"], truth["width"], truth["height"], scenes, steps, tasks
    )
