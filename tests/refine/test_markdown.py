import pytest

from action100m.dataset.schema import Node, VideoRecord, read_official_json
from action100m.errors import RecordError
from action100m.refine.markdown import subtree_markdown


def record() -> VideoRecord:
    return VideoRecord(
        "v",
        {"duration": 10.0},
        [
            Node("r", None, 0, 0.0, 10.0, segment_caption="A person cooks."),
            Node("a", "r", 1, 0.0, 4.0, segment_caption="Chops onions.", frame_caption="A knife.\nA board."),
            Node("b", "r", 1, 4.0, 10.0, segment_caption="Stirs a pot."),
        ],
    )


def test_depth_first_headings_captions_and_quotes():
    assert subtree_markdown(record()) == (
        "# 0.00s → 10.00s (10.00s)\nA person cooks.\n\n"
        "## 0.00s → 4.00s (4.00s)\nChops onions.\n> A knife.\n> A board.\n\n"
        "## 4.00s → 10.00s (6.00s)\nStirs a pot."
    )


def test_subtree_and_depth_cap():
    assert subtree_markdown(record(), "b") == "# 4.00s → 10.00s (6.00s)\nStirs a pot."
    assert subtree_markdown(record(), max_depth=1) == "# 0.00s → 10.00s (10.00s)\nA person cooks."


def test_official_sample_serialises_depth_first(official_sample):
    [sample] = read_official_json(official_sample)
    children = sample.children()
    text = subtree_markdown(sample, children=children)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings[0] == "# 0.00s → 689.83s (689.83s)"
    assert headings[1].startswith("## 0.00s → 622.25s")
    assert headings[2].startswith("### 0.00s → 569.58s")  # depth first: the first child's subtree next
    assert max(len(h.split(" ")[0]) for h in headings) == 6
    full = subtree_markdown(sample, max_depth=100, children=children)
    assert full.count("\n#") + 1 == len(sample.nodes)
    assert full.count("\n> ") >= len(sample.leaves())


def test_unknown_node():
    with pytest.raises(RecordError, match="video v: no node zz"):
        subtree_markdown(record(), "zz")
