"""SynthActions' zero-shot benchmark (`action100m synth --benchmark-clips N` writes OUT/benchmark/).

The SSv2 layout (see ssv2.py) with .mp4 videos: `something-something-v2-labels.json`,
`something-something-v2-validation.json`, `20bn-something-something-v2/<id>.mp4`. Classes are the
held-out verb x object compositions.
"""

from __future__ import annotations

from action100m.eval.benchmarks.base import Benchmark, Source
from action100m.eval.benchmarks.ssv2 import read_ssv2_layout

NAME = "synth"


def read(source: Source) -> Benchmark:
    return read_ssv2_layout(NAME, source, ".mp4", ("",))
