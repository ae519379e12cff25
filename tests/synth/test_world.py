import json

import numpy as np
import pytest

from action100m.synth.sampler import sample_video_spec
from action100m.synth.world import (
    COLOURS,
    EXTENT,
    HELD_OUT,
    SHAPES,
    SIZES,
    VERB_TEXT,
    VERBS,
    ObjectState,
    advance,
    frame_state,
    from_truth,
    is_held_out,
    scene_at,
    to_truth,
)

FPS = 10.0


@pytest.fixture(scope="module")
def specs():
    return [sample_video_spec(np.random.default_rng(i), f"v{i}", FPS) for i in range(300)]


def test_vocabulary_has_at_least_12_verbs_each_with_three_phrasings():
    base_verbs = {verb for verb in VERBS if not verb.startswith("change colour to")} | {"change colour"}
    assert len(base_verbs) >= 12
    for texts in VERB_TEXT.values():
        assert len(texts) == 3 and all("{obj}" in text for text in texts)


def test_held_out_compositions_cover_every_verb_colour_and_shape():
    assert len(HELD_OUT) == 28
    assert {verb for verb, _, _ in HELD_OUT} == set(VERBS)
    assert {colour for _, colour, _ in HELD_OUT} == set(COLOURS)
    assert {shape for _, _, shape in HELD_OUT} == set(SHAPES)
    assert not is_held_out("change colour to red", "red", "square")  # not a composition at all


def test_specs_keep_the_world_rules(specs):
    for spec in specs:
        assert 3 <= len(spec.steps) <= 12
        assert spec.steps[0].start >= FPS and spec.num_frames - spec.steps[-1].end >= FPS
        for step in spec.steps:
            assert FPS <= step.end - step.start <= 8 * FPS, "steps last 1-8 s"
        for before, after in zip(spec.steps, spec.steps[1:], strict=False):
            assert after.start - before.end >= FPS, "at least 1 s of stillness between two steps"
        for scene in spec.scenes[1:]:
            gaps = [abs(scene.start - t) for step in spec.steps for t in (step.start, step.end)]
            assert min(gaps) >= FPS, "a cut falls in a pause, 1 s away from any step"
        assert [i for task in spec.tasks for i in task.steps] == list(range(len(spec.steps)))
        for task in spec.tasks:
            assert len({(spec.steps[i].scene, spec.steps[i].obj) for i in task.steps}) == 1


def test_steps_name_their_object_and_never_a_held_out_composition(specs):
    for spec in specs:
        for step in spec.steps:
            before = frame_state(spec, step.start - 1).objects[step.obj]
            assert (before.colour, before.shape) == (step.colour, step.shape)
            assert not is_held_out(step.verb, step.colour, step.shape)
            # Only a hidden object can be faded in, and only a visible one can be acted on otherwise.
            assert before.visible == (step.verb != "fade in")


def test_objects_stay_inside_the_frame(specs):
    for spec in specs:
        for frame in range(0, spec.num_frames, 3):
            for obj in frame_state(spec, frame).objects:
                extent = SIZES[obj.size] * obj.scale * EXTENT
                assert extent <= obj.x <= 1 - extent and extent <= obj.y <= 1 - extent


def test_truth_round_trips_through_json(specs):
    for spec in specs[:50]:
        truth = json.loads(json.dumps(to_truth(spec)))
        assert from_truth(truth) == spec
        assert truth["duration"] == spec.num_frames / spec.fps
        assert truth["cuts"] == [spec.time(scene.start) for scene in spec.scenes[1:]]


def test_same_generator_seed_same_spec_other_seed_other_spec():
    first = sample_video_spec(np.random.default_rng(7), "v")
    assert sample_video_spec(np.random.default_rng(7), "v") == first
    assert sample_video_spec(np.random.default_rng(8), "v") != first


@pytest.mark.parametrize(
    "verb, params",
    [
        ("move left", {"dx": -0.2, "dy": 0.0}),
        ("rotate clockwise", {"degrees": 90.0}),
        ("grow", {"factor": 1.5}),
        ("bounce", {"height": 0.1, "hops": 2}),
        ("shake", {"amplitude": 0.04, "cycles": 3}),
        ("flip", {}),
        ("change colour to blue", {}),
    ],
)
def test_a_step_starts_from_the_rest_state_and_oscillations_return(verb, params):
    state = ObjectState("square", "medium", "red", COLOURS["red"], 0.5, 0.5)
    assert advance(state, verb, params, 0.0) == state
    done = advance(state, verb, params, 1.0)
    if verb in ("bounce", "shake"):
        assert done == state
    else:
        assert done != state and advance(state, verb, params, 0.5) not in (state, done)


def test_frame_state_progress_runs_from_first_to_last_frame_of_a_step(specs):
    spec = specs[0]
    step = spec.steps[0]
    n = step.end - step.start
    assert frame_state(spec, step.start - 1).step is None
    first, last = frame_state(spec, step.start), frame_state(spec, step.end - 1)
    assert (first.step, first.progress) == (0, pytest.approx(1 / n))
    assert (last.step, last.progress) == (0, 1.0)
    assert frame_state(spec, step.end).step is None
    assert frame_state(spec, step.end).objects == last.objects


def test_scene_at_follows_the_cuts(specs):
    spec = next(spec for spec in specs if len(spec.scenes) > 1)
    cut = spec.scenes[1].start
    assert scene_at(spec, cut - 1) == 0 and scene_at(spec, cut) == 1


def test_fractional_fps_keeps_one_second_minimums_and_exact_times():
    for seed in range(30):
        spec = sample_video_spec(np.random.default_rng(seed), "v", fps=12.5, width=160, height=96)
        assert all(step.end - step.start >= 12.5 for step in spec.steps)
        assert all(b.start - a.end >= 12.5 for a, b in zip(spec.steps, spec.steps[1:], strict=False))
        assert from_truth(json.loads(json.dumps(to_truth(spec)))) == spec
