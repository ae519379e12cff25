"""Video metadata in the official Action100M form: title, description, duration, upload date, view and
like counts, and a transcript narrated the way YouTube's ASR hears instructional videos.

The transcript has the problems real ones have: speech that leads or lags the action by up to 3 s, filler
("hey guys welcome back"), steps done without a word, lower case without punctuation, misheard words,
and lines cut into caption-sized chunks. As in the release, `time` is a string of seconds.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import numpy as np

from action100m.synth.world import VideoSpec, action_label

INTRO = (
    "hey guys welcome back to my channel",
    "hi everyone and welcome back",
    "hello and welcome to another video",
    "what's up guys",
)
FILLERS = (
    "this part is really easy",
    "make sure you take your time here",
    "okay so",
    "alright",
    "don't forget to like and subscribe",
    "you can see it right there",
    "that looks pretty good",
    "just like that",
)
STEP_LEADS = (
    "now we're going to {action}",
    "next {action}",
    "so here i'm going to {action}",
    "okay let's {action}",
    "and then you {action}",
    "{action} like this",
    "what you want to do is {action}",
)
CUT_LINES = ("now let's move on to the next one", "okay next part", "so for this one")
OUTRO = (
    "thanks for watching see you next time",
    "that's it for today bye",
    "thanks guys see you in the next one",
)
# Words the recogniser tends to mishear, and what it writes instead.
MISHEARD = {
    "anticlockwise": "anti clockwise",
    "colour": "color",
    "circle": "circles",
    "right": "write",
    "square": "squared",
    "shake": "shape",
    "flip": "flick",
    "bigger": "big",
}
MISSING_PROBABILITY = 0.25  # of a step done without narration
FILLER_PROBABILITY = 0.2  # of a filler line after a step
MISHEARD_PROBABILITY = 0.15
SECONDS_PER_WORD, MIN_SECONDS_PER_WORD = 0.35, 0.1
MAX_CHUNK_WORDS = 8


def title(spec: VideoSpec) -> str:
    goals = [task.name for task in spec.tasks]
    if len(goals) == 1:
        return f"How to {goals[0]}"
    if len(goals) == 2:
        return f"How to {goals[0]} and {goals[1]}"
    return f"How to {goals[0]} and more (step by step)"


def description(spec: VideoSpec, rng: np.random.Generator) -> str:
    parts = [f"In this video I show you how to {' and '.join(task.name for task in spec.tasks)}."]
    if rng.random() < 0.5:
        parts.append("It only takes a minute and you don't need any special tools!")
    parts.append("Don't forget to like, comment and subscribe for more tutorials.")
    return "\n\n".join(parts)


def _say(rng: np.random.Generator, text: str) -> str:
    """What ASR writes for `text`: lower case, no punctuation, now and then a word misheard."""
    words = []
    for word in text.lower().split():
        if word in MISHEARD and rng.random() < MISHEARD_PROBABILITY:
            word = MISHEARD[word]
        words.append("".join(ch for ch in word if ch.isalnum() or ch in " '"))
    return " ".join(words)


@dataclass(frozen=True)
class Line:
    """One thing the narrator says, when they start saying it, and the step it is about (if any)."""

    time: float
    text: str
    step: int | None = None


def script(spec: VideoSpec, rng: np.random.Generator) -> list[Line]:
    """What is said and when: a greeting, then speech about most steps 0-3 s off their start (a bias
    per video plus jitter per line), filler, a word at each cut and a goodbye, in speaking order."""
    bias = float(rng.uniform(-2.0, 2.0))  # the narrator's habit: ahead of or behind the action

    def near(seconds: float) -> float:
        return seconds + bias + float(rng.uniform(-1.0, 1.0))

    greeting = float(rng.uniform(0.0, 1.0))
    intro = [
        Line(greeting, str(rng.choice(INTRO))),
        Line(greeting, f"today we're going to {spec.tasks[0].name}"),
    ]
    lines = []
    for index, step in enumerate(spec.steps):
        if rng.random() >= MISSING_PROBABILITY:
            action = action_label(step.verb, step.colour, step.shape)
            lines.append(
                Line(near(spec.time(step.start)), str(rng.choice(STEP_LEADS)).format(action=action), index)
            )
        if rng.random() < FILLER_PROBABILITY:
            lines.append(Line(near(spec.time(step.end)), str(rng.choice(FILLERS))))
    lines += [Line(near(spec.time(scene.start)), str(rng.choice(CUT_LINES))) for scene in spec.scenes[1:]]
    lines.append(Line(spec.duration - 2.0, str(rng.choice(OUTRO))))
    return intro + sorted(lines, key=lambda line: line.time)  # the narrator always greets first


def transcript(spec: VideoSpec, rng: np.random.Generator) -> list[dict[str, str]]:
    """The script as ASR hears it: {time, text} chunks of 3-8 lower-case words without punctuation."""
    lines = script(spec, rng)
    chunks: list[dict[str, str]] = []
    clock = 0.0  # one speaker: a line starts once the previous one is said
    for line, upcoming in zip(lines, lines[1:] + [Line(spec.duration, "")], strict=True):
        words = _say(rng, line.text).split()
        clock = max(clock, line.time, 0.0)
        # A busy narrator talks faster rather than falling behind the action.
        pace = min(SECONDS_PER_WORD, max(MIN_SECONDS_PER_WORD, (upcoming.time - clock) / len(words)))
        while words:
            size = int(rng.integers(3, MAX_CHUNK_WORDS + 1))
            chunk, words = words[:size], words[size:]
            if clock < spec.duration:
                chunks.append({"time": str(round(clock, 2)), "text": " ".join(chunk)})
            clock += pace * len(chunk)
    return chunks


def metadata(spec: VideoSpec, rng: np.random.Generator) -> dict[str, Any]:
    """The `metadata` of a manifest line; `duration` is exactly num_frames / fps."""
    day = datetime.date(2010, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 11 * 365)))
    views = int(rng.lognormal(8.0, 1.5))
    return {
        "title": title(spec),
        "description": description(spec, rng),
        "view_count": views,
        "like_count": int(views * rng.uniform(0.01, 0.06)),
        "duration": spec.duration,
        "upload_date": day.strftime("%Y%m%d"),
        "transcript": transcript(spec, rng),
    }
