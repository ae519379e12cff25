"""Diving48 and other sets labelled by a JSON vocabulary of attribute lists (split test | train).

Files (in root, or in mmaction2's `annotations/` under it): `Diving48_V2_{split}.json` (a list of
{vid_name, label, start_frame, end_frame}; test 1,970) and `Diving48_vocab.json` (48 lists [takeoff,
somersaults, twists, position]). Class text is the attributes in words: ["Back", "15som", "05Twis",
"FREE"] -> "back, 1.5 somersaults, 0.5 twist, free position". Videos: `<videos>/rgb/<vid_name>.mp4`, the
trimmed dives, read whole (start_frame..end_frame spans each file).
"""

from __future__ import annotations

import re

from action100m.eval.benchmarks.base import Benchmark, Clip, Source, class_list, field_of, read_json
from action100m.eval.errors import BenchmarkFileError
from action100m.eval.prompts import normalise_class_name

NAME = "diving48"
SPLITS = ("test", "train")
FOLDERS = ("", "annotations")
POSITIONS = {"FREE": "free", "PIKE": "pike", "STR": "straight", "TUCK": "tuck"}


def _count(code: str) -> str:
    """ "15" -> "1.5", "2" -> "2", "05" -> "0.5": a second digit is the half."""
    return code if len(code) == 1 else f"{code[0]}.{code[1:]}"


def _plural(count: str, noun: str) -> str:
    return f"{count} {noun}" + ("" if float(count) <= 1 else "s")


def attribute_text(attribute: str) -> str:
    if match := re.fullmatch(r"(\d+)som", attribute):
        return _plural(_count(match.group(1)), "somersault")
    if match := re.fullmatch(r"(\d+)Twis", attribute):
        return _plural(_count(match.group(1)), "twist")
    if attribute == "NoTwis":
        return "no twist"
    if attribute in POSITIONS:
        return f"{POSITIONS[attribute]} position"
    return attribute.lower()  # takeoff (Back, Forward, Inward, Reverse) and "Dive"


def read(source: Source) -> Benchmark:
    split = source.choice(NAME, "split", source.split, SPLITS)
    vocab_path = source.find(NAME, "vocab", ("Diving48_vocab.json",), FOLDERS)
    path = source.find(NAME, "annotations", (f"Diving48_V2_{split}.json",), FOLDERS)
    vocab = read_json(NAME, vocab_path)
    if not isinstance(vocab, list) or not all(isinstance(v, list) for v in vocab):
        raise BenchmarkFileError(NAME, vocab_path, "expected a list of attribute lists")
    class_names = class_list(NAME, vocab_path, [" ".join(attributes) for attributes in vocab])
    texts = [normalise_class_name(", ".join(attribute_text(a) for a in attributes)) for attributes in vocab]
    entries = read_json(NAME, path)
    if not isinstance(entries, list):
        raise BenchmarkFileError(NAME, path, "expected a list of {vid_name, label, start_frame, end_frame}")
    ext = source.video_ext or ".mp4"
    clips = []
    for k, entry in enumerate(entries):
        name = str(field_of(NAME, path, entry, "vid_name", f"entry {k}"))
        label = int(field_of(NAME, path, entry, "label", name))
        if not 0 <= label < len(class_names):
            raise BenchmarkFileError(
                NAME, path, f"{name}: label {label} outside the {len(class_names)} classes"
            )
        clips.append(Clip(name, source.videos / "rgb" / f"{name}{ext}", label))
    return Benchmark(NAME, split, "dive", class_names, texts, clips, [path, vocab_path])
