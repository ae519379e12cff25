"""Kinetics-400 / 600 / 700 (task k400 | k600 | k700).

Files: DeepMind's CSV of the split (val | train; header `label,youtube_id,time_start,time_end,split[,is_cc]`,
multi-word labels quoted) under any of its published names: the ActivityNet crawler's
`kinetics-{N}_{split}.csv`, DeepMind's `{validate,train}.csv` (its tarball unpacks to `kinetics{N}/`,
K700-2020's to `kinetics700_2020/`) or CVDF's `{val,train}.csv` (in `k{N}/annotations/`, K700-2020's in
`k700-2020/annotations/`). They are looked for in root and in those folders under it, as is the label map.
Classes (`class_names`): `label_map` (default) reads mmaction2's `label_map_k{N}.txt`, one class a line,
line index = id; `annotations` takes the sorted labels of the CSV (Kinetics ids are alphabetical).
Videos are the trimmed 10 s files `<youtube_id>_<start:06d>_<end:06d>.mp4`, read whole, laid out as
`flat` (CVDF: `<videos>/<name>.mp4`), `by_label` (ActivityNet crawler: `<videos>/<label>/<name>.mp4`) or
`by_label_underscored` (mmaction2: `<videos>/<label with _ for spaces>/<name>.mp4`).
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import (
    Benchmark,
    Clip,
    Source,
    class_index,
    class_list,
    read_csv,
    read_lines,
)
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "kinetics"
TASKS = {"k400": 400, "k600": 600, "k700": 700}
SPLITS = ("val", "train")
CLASS_SOURCES = ("label_map", "annotations")
LAYOUTS = ("flat", "by_label", "by_label_underscored")
COLUMNS = ("label", "youtube_id", "time_start", "time_end")
CSV_NAMES = {"val": ("validate.csv", "val.csv"), "train": ("train.csv",)}


def folders(count: int) -> tuple[str, ...]:
    """Where DeepMind's tarball and CVDF's downloader put the CSVs, relative to the root."""
    releases = [f"kinetics{count}", f"k{count}/annotations"]
    if count == 700:
        releases += ["kinetics700_2020", "k700-2020/annotations"]
    return ("", "annotations", *releases)


def video_name(youtube_id: str, start: str, end: str) -> str:
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def _folder(layout: str, label: str) -> str:
    return {"flat": "", "by_label": label, "by_label_underscored": label.replace(" ", "_")}[layout]


def read(source: Source) -> Benchmark:
    task = source.choice(NAME, "task", source.task, tuple(TASKS))
    split = source.choice(NAME, "split", source.split, SPLITS)
    source_of_names = source.choice(NAME, "class_names", source.class_names, CLASS_SOURCES)
    layout = source.choice(NAME, "layout", source.layout, LAYOUTS)
    count = TASKS[task]
    where = folders(count)
    csv_path = source.find(NAME, "annotations", (f"kinetics-{count}_{split}.csv", *CSV_NAMES[split]), where)
    rows = read_csv(NAME, csv_path, COLUMNS)
    files = [csv_path]
    if source_of_names == "label_map":
        map_path = source.find(NAME, "label_map", (f"label_map_k{count}.txt",), where)
        class_names = class_list(NAME, map_path, read_lines(map_path))
        files.append(map_path)
    else:
        map_path, class_names = csv_path, sorted({row["label"] for row in rows})
    if len(class_names) != count or len(set(class_names)) != count:
        raise BenchmarkFileError(
            NAME, map_path, f"{len(set(class_names))} distinct classes, {task} has {count}"
        )
    lookup = {name: i for i, name in enumerate(class_names)}
    ext = source.video_ext or ".mp4"
    clips = []
    for line, row in enumerate(rows, start=2):
        label = class_index(NAME, csv_path, lookup, row["label"], f"line {line}")
        try:
            name = video_name(row["youtube_id"], row["time_start"], row["time_end"])
        except ValueError:
            raise BenchmarkFileError(NAME, csv_path, f"line {line}: times must be integer seconds") from None
        clips.append(Clip(name, source.videos / _folder(layout, row["label"]) / f"{name}{ext}", label))
    return Benchmark(
        f"{NAME}{count}",
        split,
        task,
        class_names,
        [normalise_class_name(n) for n in class_names],
        clips,
        files,
    )
