"""Prompt template sets, class-name normalisation, and the class x template text grid.

A benchmark config names one set (`templates`) or gives its own list (`template_list`); `{}` is
replaced by the class text. The published sets are in template_data.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from action100m.errors import ConfigError
from action100m.eval.template_data import ACTIONCLIP, CLIP_KINETICS700, CLIP_UCF101

# The class text alone: VL-JEPA's Y-encoder is trained on brief action phrases ("stir mixture").
DEFAULT = ("{}",)
VIDEO_OF = ("a video of {}.",)
VIDEO_OF_PERSON = ("a video of a person {}.",)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT,
    "video_of": VIDEO_OF,
    "video_of_person": VIDEO_OF_PERSON,
    "clip_kinetics700": CLIP_KINETICS700,
    "clip_ucf101": CLIP_UCF101,
    "actionclip": ACTIONCLIP,
}


def template_set(name: str, custom: Sequence[str] | None = None) -> list[str]:
    """The templates of set `name`, or `custom` when given; each must hold exactly one `{}`."""
    if custom:
        templates = list(custom)
    else:
        try:
            templates = list(TEMPLATE_SETS[name])
        except KeyError:
            raise ConfigError(
                f"unknown template set {name!r}; choose one of {sorted(TEMPLATE_SETS)} or give template_list"
            ) from None
    for template in templates:
        if template.count("{}") != 1:
            raise ConfigError(f"template {template!r} must contain '{{}}' exactly once")
    return templates


def split_camel_case(name: str) -> str:
    """ "ReplaceCDDriveWithSSD" -> "Replace CD Drive With SSD", "MakeRJ45Cable" -> "Make RJ45 Cable"."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", name)


def normalise_class_name(name: str) -> str:
    """Readable class text: underscores to spaces, brackets dropped, spaces collapsed, lower case except
    acronyms ("CD", "TV", "RJ45"), which carry meaning in upper case."""
    text = name.replace("_", " ").replace("[", "").replace("]", "")
    words = text.split()
    return " ".join(w if len(w) >= 2 and w.isupper() else w.lower() for w in words)


def match_key(name: str) -> str:
    """The key two spellings of one class share ("HandstandPushups", "Hand Stand Pushups", "hand_stand")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def prompt_texts(class_texts: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every class text in every template, class-major: row c holds class c's len(templates) prompts."""
    return [template.format(text) for text in class_texts for template in templates]
