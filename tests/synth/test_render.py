import numpy as np
import pytest

from action100m.synth.render import background, draw_object, render_frames
from action100m.synth.sampler import sample_clip_spec, sample_video_spec
from action100m.synth.world import (
    COLOURS,
    SHAPES,
    SKINS,
    ObjectSpec,
    ObjectState,
    Scene,
    Step,
    Task,
    VideoSpec,
)

SCENE = Scene(0, "light grey", "plain", None, 0.5, None, ())


def _drawn(state: ObjectState, size: int = 128) -> np.ndarray:
    frame = background(SCENE, size, size)
    draw_object(frame, state)
    return frame


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


def _marker(frame: np.ndarray) -> np.ndarray:
    """The dark marker inside a red object: red well below the body's."""
    red, green = frame[..., 0], frame[..., 1]
    return (red > 50) & (red < 150) & (green < 40)


def test_frames_have_the_spec_layout_at_any_size():
    spec = sample_video_spec(np.random.default_rng(0), "v", fps=8, width=96, height=64)
    frames = list(render_frames(spec))
    assert len(frames) == spec.num_frames
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)


def test_pauses_are_still_and_steps_move():
    spec = sample_video_spec(np.random.default_rng(1), "v")
    frames = list(render_frames(spec))
    in_step = np.zeros(spec.num_frames, bool)
    for step in spec.steps:
        in_step[step.start : step.end] = True
        assert not np.array_equal(frames[step.start - 1], frames[step.end - 1])
    for i in range(1, spec.num_frames):
        cut = any(scene.start == i for scene in spec.scenes)
        if not in_step[i] and not in_step[i - 1] and not cut:
            assert np.array_equal(frames[i], frames[i - 1])


def test_rotation_is_clockwise_on_screen_and_flip_mirrors():
    state = ObjectState("circle", "large", "red", COLOURS["red"], 0.5, 0.5)
    cx, cy = _centroid(_marker(_drawn(state)))
    assert cx > 64 + 3 and abs(cy - 64) < 4  # the marker starts right of the centre
    x, y = _centroid(
        _marker(_drawn(ObjectState("circle", "large", "red", COLOURS["red"], 0.5, 0.5, angle=90)))
    )
    assert y > 64 + 3 and abs(x - 64) < 4  # a quarter turn clockwise (y grows downwards) brings it down
    x, _ = _centroid(
        _marker(_drawn(ObjectState("circle", "large", "red", COLOURS["red"], 0.5, 0.5, flip=-1)))
    )
    assert x < 64 - 3


def test_shapes_are_told_apart_by_their_masks():
    masks = {}
    for shape in SHAPES:
        frame = _drawn(ObjectState(shape, "medium", "blue", COLOURS["blue"], 0.5, 0.5))
        masks[shape] = frame[..., 2].astype(int) > frame[..., 0].astype(int) + 60
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.85, (a, b, iou)  # circle vs square is the closest pair: corners


def test_a_hand_appears_exactly_while_a_step_runs():
    scene = Scene(
        0, "slate", "stripes", "wooden", 0.6, "light", (ObjectSpec("green", "cross", "medium", 0.5, 0.4),)
    )
    step = Step(10, 25, 0, 0, "move left", "green", "cross", {"dx": -0.2, "dy": 0.0})
    spec = VideoSpec("v", 10.0, 35, 128, 128, (scene,), (step,), (Task("arrange the green cross", (0,)),))
    skin = np.asarray(SKINS["light"])
    for index, frame in enumerate(render_frames(spec)):
        has_hand = (frame == skin).all(-1).sum() > 30
        assert has_hand == (10 <= index < 25), index


@pytest.mark.parametrize("verb", ["fade in", "move right", "change colour to yellow"])
def test_a_clip_shows_its_step_from_first_to_last_frame(verb):
    spec = sample_clip_spec(np.random.default_rng(3), "c", verb, "purple", "triangle")
    frames = list(render_frames(spec))
    assert len(frames) == spec.num_frames == spec.steps[0].end
    assert not np.array_equal(frames[0], frames[-1])
