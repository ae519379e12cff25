"""Ego-Exo4D fine-grained keystep recognition (the paper's "EgoExo4D").

Files: `keystep_segment_{split}.json` (split val | train: {segments: [{ego_segment_name, take_name,
start_time, end_time, label_id, step_name, ...}]}) and `label_mapping.csv` (label_id,step_unique_id,
step_name,scenario_name; 278 classes), in `annotations/keystep_benchmark/` of the Ego-Exo4D download
folder; root is that download folder, its `annotations/` or `annotations/keystep_benchmark/` itself. Only
the ego clip is evaluated, as the benchmark prescribes. Videos: the trimmed clips
`<videos>/keystep_benchmark/clips_448p/<ego_segment_name>`, read whole.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, class_list, field_of, read_csv, read_json
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "egoexo4d_keystep"
SPLITS = ("val", "train")
FOLDERS = ("annotations/keystep_benchmark", "keystep_benchmark", "")
CLIP_DIR = "keystep_benchmark/clips_448p"


def read(source: Source) -> Benchmark:
    split = source.choice(NAME, "split", source.split, SPLITS)
    mapping_path = source.find(NAME, "label_mapping", ("label_mapping.csv",), FOLDERS)
    path = source.find(NAME, "annotations", (f"keystep_segment_{split}.json",), FOLDERS)
    rows = read_csv(NAME, mapping_path, ("label_id", "step_name"))
    ids = sorted(rows, key=lambda row: int(row["label_id"]))
    if [int(row["label_id"]) for row in ids] != list(range(len(ids))):
        raise BenchmarkFileError(NAME, mapping_path, f"label ids are not 0..{len(ids) - 1}")
    class_names = class_list(NAME, mapping_path, [row["step_name"] for row in ids])
    clips = []
    for k, seg in enumerate(field_of(NAME, path, read_json(NAME, path), "segments", "the file")):
        name = str(field_of(NAME, path, seg, "ego_segment_name", f"segment {k}"))
        label = int(field_of(NAME, path, seg, "label_id", name))
        if not 0 <= label < len(class_names):
            raise BenchmarkFileError(NAME, path, f"segment {name}: unknown label_id {label}")
        clips.append(Clip(name, source.videos / CLIP_DIR / name, label))
    return Benchmark(
        NAME,
        split,
        "keystep",
        class_names,
        [normalise_class_name(n) for n in class_names],
        clips,
        [path, mapping_path],
    )
