"""UCF101 (split test1 | test2 | test3 | train1 | train2 | train3).

Files (in root, the ucfTrainTestlist/ that UCF101TrainTestSplits-RecognitionTask.zip unpacks to, or in
that folder under root; CRLF line endings): `classInd.txt` (`1 ApplyEyeMakeup`,
1-based) and `testlist0{n}.txt` (`ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`) or `trainlist0{n}.txt`
(the same + a 1-based label). The label of a line is its folder, matched to classInd by normalised name
(the folder HandstandPushups holds v_HandStandPushups_* files; never trust the file name or list order).
Class text (`class_names`): `official` splits the classInd names ("Apply Eye Makeup"); `clip` uses CLIP's
101 readable names, matched by normalised name (CLIP's list is in another order).
Videos: `<videos>/UCF-101/<Class>/<file>.avi`, read whole. Test sizes 3,783 / 3,734 / 3,696.
"""

from __future__ import annotations

from pathlib import Path

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, class_index, class_list, read_lines
from action100m.eval.errors import BenchmarkFileError, EvalError
from action100m.eval.prompts import match_key, normalise_class_name, split_camel_case
from action100m.eval.template_data import CLIP_UCF101_CLASSES

NAME = "ucf101"
SPLITS = ("test1", "test2", "test3", "train1", "train2", "train3")
CLASS_SOURCES = ("official", "clip")
VIDEO_DIR = "UCF-101"
FOLDERS = ("", "ucfTrainTestlist")


def read_class_index(path: Path) -> list[str]:
    """Names in id order from `<id> <Name>` lines, checking the ids are 1..N."""
    names = []
    for k, line in enumerate(read_lines(path), start=1):
        index, _, name = line.partition(" ")
        if not index.isdigit() or int(index) != k or not name.strip():
            raise BenchmarkFileError(NAME, path, f"line {k}: expected '{k} <ClassName>', got {line!r}")
        names.append(name.strip())
    return names


def readable_names(class_names: list[str], source_of_names: str) -> list[str]:
    if source_of_names == "official":
        return [split_camel_case(name) for name in class_names]
    clip_names = {match_key(name): name for name in CLIP_UCF101_CLASSES}
    missing = [name for name in class_names if match_key(name) not in clip_names]
    if missing:
        raise EvalError(f"{NAME}: CLIP's class list has no name for {missing[0]!r}")
    return [clip_names[match_key(name)] for name in class_names]


def read(source: Source) -> Benchmark:
    split = source.choice(NAME, "split", source.split, SPLITS)
    source_of_names = source.choice(NAME, "class_names", source.class_names, CLASS_SOURCES)
    classes_path = source.find(NAME, "classes", ("classInd.txt",), FOLDERS)
    list_path = source.find(NAME, "split", (f"{split[:-1]}list0{split[-1]}.txt",), FOLDERS)
    class_names = class_list(NAME, classes_path, read_class_index(classes_path))
    lookup = {match_key(name): i for i, name in enumerate(class_names)}
    clips = []
    for k, line in enumerate(read_lines(list_path), start=1):
        relative = line.split()[0]
        folder, _, file = relative.partition("/")
        if not file:
            raise BenchmarkFileError(NAME, list_path, f"line {k}: expected <Class>/<file>.avi, got {line!r}")
        label = class_index(NAME, list_path, lookup, match_key(folder), f"line {k} ({folder})")
        clips.append(Clip(file.rsplit(".", 1)[0], source.videos / VIDEO_DIR / relative, label))
    texts = [normalise_class_name(name) for name in readable_names(class_names, source_of_names)]
    return Benchmark(
        NAME, split, f"{source_of_names} names", class_names, texts, clips, [classes_path, list_path]
    )
