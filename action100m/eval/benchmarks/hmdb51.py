"""HMDB51 (split test1 | test2 | test3 | train1 | train2 | train3).

Files (in root, the testTrainMulti_7030_splits/ that test_train_splits.rar unpacks to, or in that folder
under root): `<class>_test_split{n}.txt` for each class,
lines `<video>.avi <id> ` (trailing space) with id 1 = train, 2 = test, 0 = unused; 30 test clips per
class and split. The classes are the file names' class parts, sorted (51; "brush_hair"), and a line's
label is its file's class. Class text: underscores as spaces ("brush hair").
Videos: `<videos>/hmdb51_org/<class>/<video>.avi`, read whole.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, read_lines
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "hmdb51"
SPLITS = ("test1", "test2", "test3", "train1", "train2", "train3")
SPLIT_IDS = {"train": "1", "test": "2"}
VIDEO_DIR = "hmdb51_org"
FOLDERS = ("", "testTrainMulti_7030_splits")


def read(source: Source) -> Benchmark:
    split = source.choice(NAME, "split", source.split, SPLITS)
    number, wanted = split[-1], SPLIT_IDS[split[:-1]]
    suffix = f"_test_split{number}.txt"
    paths = sorted(source.find(NAME, "splits", ("",), FOLDERS, holds=f"*{suffix}").glob(f"*{suffix}"))
    class_names = [path.name[: -len(suffix)] for path in paths]
    clips = []
    for label, path in enumerate(paths):
        for k, line in enumerate(read_lines(path), start=1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise BenchmarkFileError(
                    NAME, path, f"line {k}: expected '<video>.avi <0|1|2>', got {line!r}"
                )
            if parts[1] == wanted:
                video = source.videos / VIDEO_DIR / class_names[label] / parts[0]
                clips.append(Clip(parts[0].rsplit(".", 1)[0], video, label))
    texts = [normalise_class_name(name) for name in class_names]
    return Benchmark(NAME, split, "action", class_names, texts, clips, paths)
