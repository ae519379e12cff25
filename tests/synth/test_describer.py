import pytest

from action100m.errors import Action100MError
from action100m.synth.describer import DESCRIBER_ID, NOT_APPLICABLE, GroundTruthDescriber
from action100m.synth.world import ObjectSpec, Scene, Step, Task, VideoSpec

RED_SQUARE = ObjectSpec("red", "square", "large", 0.25, 0.3)
BLUE_CIRCLE = ObjectSpec("blue", "circle", "small", 0.75, 0.75)


def _spec(hand: str | None = "light") -> VideoSpec:
    """1 s still, rotate the red square (1-3 s), still, recolour it (4-6 s), cut at 7.5 s, fade out."""
    scene = Scene(0, "beige", "checker", "wooden", 0.6, hand, (RED_SQUARE, BLUE_CIRCLE))
    second = Scene(75, "slate", "plain", None, 0.5, None, (ObjectSpec("green", "cross", "medium", 0.5, 0.5),))
    steps = (
        Step(10, 30, 0, 0, "rotate clockwise", "red", "square", {"degrees": 180.0}),
        Step(40, 60, 0, 0, "change colour to yellow", "red", "square", {}),
        Step(90, 110, 1, 0, "fade out", "green", "cross", {}),
    )
    tasks = (Task("turn the red square around", (0, 1)), Task("show and hide the green cross", (2,)))
    return VideoSpec("vid", 10.0, 120, 128, 128, (scene, second), steps, tasks)


@pytest.fixture
def describer():
    return GroundTruthDescriber([_spec()])


def test_frame_caption_names_what_is_visible_where(describer):
    still = describer.frame_caption("vid", 0.5)
    assert still == (
        "A large red square at the top left and a small blue circle at the bottom right "
        "on a wooden table in front of a checkered beige background."
    )
    assert describer.frame_caption("vid", 2.0).endswith("A hand holds the red square from below.")
    assert "yellow square" in describer.frame_caption("vid", 6.5)  # after the colour change
    assert describer.frame_caption("vid", 11.5) == "An empty scene against a plain slate background."


def test_segment_caption_tells_the_actions_in_order_across_a_cut(describer):
    assert describer.segment_caption("vid", 1.0, 3.0).endswith("; a hand rotates the red square clockwise.")
    caption = describer.segment_caption("vid", 0.0, 12.0)
    assert "clockwise, then a hand changes the colour of the red square to yellow." in caption
    assert caption.endswith(
        "The video cuts to another scene. A green cross in the centre against a plain "
        "slate background; the green cross fades out."
    )
    assert describer.segment_caption("vid", 3.2, 3.9).endswith("; nothing moves.")


def test_action_label_is_the_step_the_task_or_na(describer):
    assert describer.action_label("vid", 1.0, 3.0) == "rotate the red square clockwise"
    assert describer.action_label("vid", 0.5, 3.5) == "rotate the red square clockwise"
    assert describer.action_label("vid", 0.0, 7.0) == "turn the red square around"
    assert describer.action_label("vid", 3.1, 3.9) == NOT_APPLICABLE
    assert describer.action_label("vid", 2.8, 3.5) == NOT_APPLICABLE  # a glimpse of a step's end is not it


def test_describe_gives_all_three_for_a_node(describer):
    node = describer.describe("vid", 1.0, 3.0)
    assert node == {
        "frame_caption": describer.frame_caption("vid", 2.0),
        "segment_caption": describer.segment_caption("vid", 1.0, 3.0),
        "action_label": "rotate the red square clockwise",
    }


def test_without_a_hand_the_object_acts_by_itself():
    describer = GroundTruthDescriber([_spec(hand=None)])
    assert describer.segment_caption("vid", 1.0, 3.0).endswith("; the red square rotates clockwise.")
    assert "hand" not in describer.frame_caption("vid", 2.0)


def test_reads_a_generated_dataset_and_refuses_other_videos(synth_dir, truths):
    describer = GroundTruthDescriber.from_dir(synth_dir)
    assert describer.model_id == DESCRIBER_ID
    for truth in truths:
        step = truth["steps"][0]
        assert describer.action_label(truth["video_uid"], step["start"], step["end"]) == step["label"]
    with pytest.raises(Action100MError, match="video hySSAAw4t24: not a SynthActions video"):
        describer.frame_caption("hySSAAw4t24", 1.0)
