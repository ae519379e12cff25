"""Something-Something v2.

Files: `something-something-v2-labels.json` ({template without brackets: "id"}, ids as strings,
following the sorted templates) and `something-something-v2-{split}.json` (split validation | train:
[{id, label, template, placeholders}]), or `labels.json` and `{split}.json` as Qualcomm's labels archive
names them; in root, or in `labels/` (what that archive unpacks to) or `annotations/` (mmaction2) under
it. The class of an entry is its `template` with the brackets removed ("Putting [something] on [a
surface]"), looked up in the labels file; 174 classes, 24,777 validation clips. Videos:
`<videos>/20bn-something-something-v2/<id>.webm`, read whole.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import (
    Benchmark,
    Clip,
    Source,
    class_index,
    class_list,
    field_of,
    read_json,
)
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "ssv2"
SPLITS = ("validation", "train")
LABELS_FILE = "something-something-v2-labels.json"
VIDEO_DIR = "20bn-something-something-v2"
FOLDERS = ("", "labels", "annotations")


def read(source: Source) -> Benchmark:
    return read_ssv2_layout(NAME, source, ".webm", FOLDERS)


def read_ssv2_layout(name: str, source: Source, video_ext: str, folders: tuple[str, ...]) -> Benchmark:
    """Any benchmark published in SSv2's layout (SynthActions writes one, with .mp4 videos), its files
    looked for in `folders` under the root."""
    split = source.choice(name, "split", source.split, SPLITS)
    labels_path = source.find(name, "labels", (LABELS_FILE, "labels.json"), folders)
    entries_path = source.find(
        name, "annotations", (f"something-something-v2-{split}.json", f"{split}.json"), folders
    )
    labels = read_json(name, labels_path)
    if not isinstance(labels, dict):
        raise BenchmarkFileError(name, labels_path, "expected an object {template: id}")
    try:
        lookup = {template: int(index) for template, index in labels.items()}
    except (TypeError, ValueError) as err:
        raise BenchmarkFileError(name, labels_path, f"class ids must be integers: {err}") from None
    if sorted(lookup.values()) != list(range(len(lookup))):
        raise BenchmarkFileError(name, labels_path, f"class ids are not 0..{len(lookup) - 1}")
    class_names = class_list(name, labels_path, sorted(lookup, key=lookup.__getitem__))
    entries = read_json(name, entries_path)
    if not isinstance(entries, list):
        raise BenchmarkFileError(name, entries_path, "expected a list of {id, label, template, placeholders}")
    ext = source.video_ext or video_ext
    clips = []
    for k, entry in enumerate(entries):
        clip_id = str(field_of(name, entries_path, entry, "id", f"entry {k}"))
        template = str(field_of(name, entries_path, entry, "template", f"entry {clip_id}"))
        label = class_index(
            name, entries_path, lookup, template.replace("[", "").replace("]", ""), f"entry {clip_id}"
        )
        clips.append(Clip(clip_id, source.videos / VIDEO_DIR / f"{clip_id}{ext}", label))
    return Benchmark(
        name,
        split,
        "template",
        class_names,
        [normalise_class_name(n) for n in class_names],
        clips,
        [labels_path, entries_path],
    )
