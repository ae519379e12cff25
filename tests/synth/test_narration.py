import re

import numpy as np
import pytest

from action100m.synth.narration import FILLERS, INTRO, metadata, script, transcript
from action100m.synth.sampler import sample_video_spec


@pytest.fixture(scope="module")
def specs():
    return [sample_video_spec(np.random.default_rng(i), f"v{i}") for i in range(100)]


def test_steps_are_narrated_up_to_3_s_off_some_not_at_all_among_filler(specs):
    narrated = total = fillers = 0
    offsets = []
    for i, spec in enumerate(specs):
        lines = script(spec, np.random.default_rng(i))
        assert lines[0].text in INTRO  # the narrator greets first
        for line in lines:
            if line.step is not None:
                offsets.append(line.time - spec.time(spec.steps[line.step].start))
                assert spec.steps[line.step].colour in line.text
        narrated += len({line.step for line in lines if line.step is not None})
        total += len(spec.steps)
        fillers += sum(line.text in FILLERS for line in lines)
    assert max(abs(o) for o in offsets) <= 3.0
    assert np.mean(np.abs(offsets) >= 1.0) > 0.4  # mostly visibly off, as ASR timing is
    assert 0.6 < narrated / total < 0.9  # some steps are done without a word
    assert fillers > 0


def test_transcript_reads_like_asr(specs):
    for i, spec in enumerate(specs[:30]):
        chunks = transcript(spec, np.random.default_rng(i))
        times = [float(chunk["time"]) for chunk in chunks]
        assert all(isinstance(chunk["time"], str) for chunk in chunks)  # as in the official release
        assert times == sorted(times) and 0.0 <= times[0] and times[-1] < spec.duration
        for chunk in chunks:
            assert re.fullmatch(r"[a-z0-9']+( [a-z0-9']+){0,7}", chunk["text"]), chunk


def test_metadata_is_official_shaped_and_seeded(specs):
    spec = specs[0]
    meta = metadata(spec, np.random.default_rng(0))
    assert set(meta) == {
        "title",
        "description",
        "view_count",
        "like_count",
        "duration",
        "upload_date",
        "transcript",
    }
    assert meta["duration"] == spec.num_frames / spec.fps
    assert meta["title"].startswith(f"How to {spec.tasks[0].name}")
    assert metadata(spec, np.random.default_rng(0)) == meta
    assert metadata(spec, np.random.default_rng(1)) != meta
