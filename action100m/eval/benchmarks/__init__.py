"""The benchmark registry: one reader module per benchmark, each turning its official files into clips.

`READERS[name](source)` returns a `Benchmark` (closed-set classification) or, for the text-video
retrieval benchmarks (`captions` and the papers' MSR-VTT, MSVD, ActivityNet Captions, YouCook2, DiDeMo
and DREAM-1K), a `RetrievalSet`. Every module's docstring lists the files it expects and how it names the videos.
"""

from __future__ import annotations

from collections.abc import Callable

from action100m.errors import ConfigError
from action100m.eval.benchmarks import (
    activitynet_captions,
    captions,
    coin,
    crosstask,
    didemo,
    diving48,
    dream1k,
    ego4d_goalstep,
    egoexo4d,
    epic_kitchens,
    hmdb51,
    kinetics,
    msrvtt,
    msvd,
    ssv2,
    synth,
    ucf101,
    youcook2,
)
from action100m.eval.benchmarks.base import Benchmark, Clip, RetrievalSet, Source

READERS: dict[str, Callable[[Source], Benchmark | RetrievalSet]] = {
    "ssv2": ssv2.read,
    "kinetics": kinetics.read,
    "epic_kitchens": epic_kitchens.read,
    "ego4d_goalstep": ego4d_goalstep.read,
    "egoexo4d_keystep": egoexo4d.read,
    "coin": coin.read,
    "crosstask": crosstask.read,
    "ucf101": ucf101.read,
    "hmdb51": hmdb51.read,
    "diving48": diving48.read,
    "synth": synth.read,
    "captions": captions.read,
    "msrvtt": msrvtt.read,
    "msvd": msvd.read,
    "activitynet_captions": activitynet_captions.read,
    "youcook2": youcook2.read,
    "didemo": didemo.read,
    "dream1k": dream1k.read,
}


def read_benchmark(reader: str, source: Source) -> Benchmark | RetrievalSet:
    """Read the annotation files of benchmark `reader` at `source` (no video is opened)."""
    try:
        read = READERS[reader]
    except KeyError:
        raise ConfigError(f"unknown benchmark reader {reader!r}; choose one of {sorted(READERS)}") from None
    return read(source)


__all__ = ["READERS", "Benchmark", "Clip", "RetrievalSet", "Source", "read_benchmark"]
