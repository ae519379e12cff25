"""EPIC-KITCHENS-100 verb, noun and action recognition (task verb | noun | action).

Files (in root, the clone of epic-kitchens-100-annotations, or in that clone under root):
`EPIC_100_{split}.csv` (split validation | train; columns narration_id, participant_id, video_id,
start_timestamp, stop_timestamp, verb_class, noun_class, ...), `EPIC_100_verb_classes.csv` (97) and
`EPIC_100_noun_classes.csv` (300), columns id,key,instances,category. Spans come from the HH:MM:SS.ss
timestamps: start_frame/stop_frame index the 50/60 fps extracted RGB frames, not the MP4s (P18_09 is 90
fps). Class text: verb keys with spaces for hyphens ("turn-on" -> "turn on"), noun keys reversed
("board:chopping" -> "chopping board"); an action is the pair "{verb} {noun}", over the (verb, noun) pairs
that occur in the split (1,352 in validation). Videos: `<videos>/<participant_id>/videos/<video_id>.MP4`
(layout `default`) or `<videos>/<participant_id>/<video_id>.MP4` (layout `participant`, as V-JEPA 2
accepts).
"""

from __future__ import annotations

from pathlib import Path

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, class_list, read_csv
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "epic_kitchens_100"
TASKS = ("verb", "noun", "action")
SPLITS = ("validation", "train")
LAYOUTS = ("default", "participant")
FOLDERS = ("", "epic-kitchens-100-annotations")
COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "start_timestamp",
    "stop_timestamp",
    "verb_class",
    "noun_class",
)


def parse_timestamp(text: str) -> float:
    """ "00:01:02.50" -> 62.5 seconds."""
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def verb_text(key: str) -> str:
    return key.replace("-", " ")


def noun_text(key: str) -> str:
    return " ".join(reversed(key.split(":")))


def _classes(source: Source, role: str, default: str) -> tuple[Path, list[str]]:
    path = source.find(NAME, role, (default,), FOLDERS)
    rows = read_csv(NAME, path, ("id", "key"))
    if [int(row["id"]) for row in rows] != list(range(len(rows))):
        raise BenchmarkFileError(NAME, path, f"class ids are not 0..{len(rows) - 1} in order")
    return path, class_list(NAME, path, [row["key"] for row in rows])


def read(source: Source) -> Benchmark:
    task = source.choice(NAME, "task", source.task, TASKS)
    split = source.choice(NAME, "split", source.split, SPLITS)
    layout = source.choice(NAME, "layout", source.layout, LAYOUTS)
    csv_path = source.find(NAME, "annotations", (f"EPIC_100_{split}.csv",), FOLDERS)
    verbs_path, verbs = _classes(source, "verb_classes", "EPIC_100_verb_classes.csv")
    nouns_path, nouns = _classes(source, "noun_classes", "EPIC_100_noun_classes.csv")
    rows = read_csv(NAME, csv_path, COLUMNS)
    ext = source.video_ext or ".MP4"
    spans, pairs = [], []
    for line, row in enumerate(rows, start=2):
        try:
            verb, noun = int(row["verb_class"]), int(row["noun_class"])
            start, end = parse_timestamp(row["start_timestamp"]), parse_timestamp(row["stop_timestamp"])
        except ValueError:
            raise BenchmarkFileError(NAME, csv_path, f"line {line}: bad class id or timestamp") from None
        if not (0 <= verb < len(verbs) and 0 <= noun < len(nouns)):
            raise BenchmarkFileError(NAME, csv_path, f"line {line}: unknown verb {verb} or noun {noun} class")
        folder = source.videos / row["participant_id"] / ("videos" if layout == "default" else "")
        spans.append((row["narration_id"], folder / f"{row['video_id']}{ext}", start, end))
        pairs.append((verb, noun))
    if task == "verb":
        class_names, texts, labels = verbs, [verb_text(v) for v in verbs], [v for v, _ in pairs]
    elif task == "noun":
        class_names, texts, labels = nouns, [noun_text(n) for n in nouns], [n for _, n in pairs]
    else:
        action_ids = {pair: i for i, pair in enumerate(sorted(set(pairs)))}
        class_names = [f"{verbs[v]} {nouns[n]}" for v, n in action_ids]
        texts = [f"{verb_text(verbs[v])} {noun_text(nouns[n])}" for v, n in action_ids]
        labels = [action_ids[pair] for pair in pairs]
    clips = [
        Clip(i, video, label, start, end) for (i, video, start, end), label in zip(spans, labels, strict=True)
    ]
    return Benchmark(
        NAME,
        split,
        task,
        class_names,
        [normalise_class_name(t) for t in texts],
        clips,
        [csv_path, verbs_path, nouns_path],
    )
