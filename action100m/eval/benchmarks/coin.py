"""COIN step recognition (task step, "COIN-SR") and task recognition (task task, "COIN-TR").

Files (in root, or in `annotations/` under it, the clone of coin-dataset/annotations): `COIN.json`
({"database": {youtube_id: {class, recipe_type, subset, annotation: [{id, segment: [start, end],
label}]}}}) and the taxonomy `target_action_mapping.csv` (Target Id, Target Label, Action Id, Action
Label; the project's CSV of taxonomy.xlsx). Split: `testing` (default; the README's "validation") |
`training`, from each video's `subset`. COIN-SR: every annotated step segment of the split, among the 778
steps (step id 1..778 -> label 0..777; only 749 step strings are distinct, and steps that share a string
tie). COIN-TR: every video of the split, whole, among the 180 tasks (recipe_type), named by the CamelCase
task split into words ("Replace CD Drive With SSD"). Videos:
`<videos>/videos/<recipe_type>/<youtube_id>.mp4`, as the official download_videos.py saves them.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, class_list, field_of, read_csv, read_json
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name, split_camel_case

NAME = "coin"
TASKS = ("step", "task")
SPLITS = ("testing", "training")
FOLDERS = ("", "annotations")
COLUMNS = ("Target Id", "Target Label", "Action Id", "Action Label")


def read(source: Source) -> Benchmark:
    task = source.choice(NAME, "task", source.task, TASKS)
    split = source.choice(NAME, "split", source.split, SPLITS)
    taxonomy_path = source.find(NAME, "taxonomy", ("target_action_mapping.csv",), FOLDERS)
    path = source.find(NAME, "annotations", ("COIN.json",), FOLDERS)
    rows = read_csv(NAME, taxonomy_path, COLUMNS)
    class_list(NAME, taxonomy_path, [row["Action Label"] for row in rows])
    steps = {int(row["Action Id"]): row["Action Label"] for row in rows}
    tasks = {int(row["Target Id"]): row["Target Label"] for row in rows}
    for what, ids, first in (("step", steps, 1), ("task", tasks, 0)):
        if sorted(ids) != list(range(first, first + len(ids))):
            raise BenchmarkFileError(
                NAME, taxonomy_path, f"{what} ids are not {first}..{first + len(ids) - 1}"
            )
    database = field_of(NAME, path, read_json(NAME, path), "database", "the file")
    ext = source.video_ext or ".mp4"
    clips = []
    for youtube_id, video in database.items():
        if field_of(NAME, path, video, "subset", youtube_id) != split:
            continue
        recipe = int(field_of(NAME, path, video, "recipe_type", youtube_id))
        if recipe not in tasks:
            raise BenchmarkFileError(NAME, path, f"video {youtube_id}: unknown recipe_type {recipe}")
        file = source.videos / "videos" / str(recipe) / f"{youtube_id}{ext}"
        if task == "task":
            clips.append(Clip(youtube_id, file, recipe))
            continue
        for k, step in enumerate(field_of(NAME, path, video, "annotation", youtube_id)):
            step_id = int(field_of(NAME, path, step, "id", f"video {youtube_id} step {k}"))
            if step_id not in steps:
                raise BenchmarkFileError(
                    NAME, path, f"video {youtube_id} step {k}: unknown step id {step_id}"
                )
            start, end = field_of(NAME, path, step, "segment", f"video {youtube_id} step {k}")
            clips.append(Clip(f"{youtube_id}_{k}", file, step_id - 1, float(start), float(end)))
    if task == "step":
        class_names = [steps[i] for i in sorted(steps)]
        texts = [normalise_class_name(n) for n in class_names]
    else:
        class_names = [tasks[i] for i in sorted(tasks)]
        texts = [normalise_class_name(split_camel_case(n)) for n in class_names]
    return Benchmark(NAME, split, task, class_names, texts, clips, [path, taxonomy_path])
