import copy
import json

import pytest

from action100m.dataset.schema import (
    Annotation,
    Node,
    Provenance,
    VideoRecord,
    from_official,
    official_columns,
    official_rows,
    read_official_json,
    to_official,
    validate_video_uid,
)
from action100m.errors import RecordError


def small_record() -> VideoRecord:
    """root [0, 10] → a [0, 4] (→ a1 [0, 1.5], a2 [1.5, 4]) and b [4, 10]."""
    nodes = [
        Node("root", None, 0, 0.0, 10.0, segment_caption="all", action_label="do it"),
        Node("a", "root", 1, 0.0, 4.0),
        Node("b", "root", 1, 4.0, 10.0, frame_caption="a frame"),
        Node("a1", "a", 2, 0.0, 1.5),
        Node("a2", "a", 2, 1.5, 4.0),
    ]
    nodes[0].annotation = Annotation("brief", "detailed", "stir mixture", "Stir it slowly.", "a person")
    return VideoRecord("vid_01-x", {"title": "How to", "duration": 10}, nodes)


# -- the official release sample --------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_row(official_sample):
    return official_rows(json.loads(official_sample.read_text()))[0]


def test_official_sample_loads_and_validates(official_sample):
    [record] = read_official_json(official_sample)
    record.validate()
    assert record.video_uid == "hySSAAw4t24"
    assert len(record.nodes) == 917
    assert len(record.leaves()) == 459
    assert sum(n.annotation is not None for n in record.nodes) == 262
    assert all(n.frame_caption for n in record.leaves())
    assert max(n.level for n in record.nodes) == 16
    assert record.root.end == pytest.approx(689.83, abs=1e-3)


def test_official_round_trip_is_lossless(official_sample, official_row):
    record = from_official(official_row)
    assert to_official(record) == official_row
    assert json.dumps(to_official(record)) == json.dumps(official_row)  # key order too
    raw = json.loads(official_sample.read_text())
    assert official_columns([record]) == raw


def test_our_json_round_trip_is_lossless(official_row):
    record = from_official(official_row)
    record.provenance = Provenance(
        models={"segment": "facebook/vjepa2-vitg-fpc64-384"},
        refine_rounds=3,
        config_hash="abc",
        extra={"describer": None},
    )
    again = VideoRecord.from_json(record.to_json())
    assert again == record
    assert to_official(again) == official_row


def test_our_json_uses_neutral_field_names(official_row):
    node = json.loads(from_official(official_row).to_json())["nodes"][0]
    assert {"frame_caption", "segment_caption", "action_label", "annotation"} <= set(node)
    assert not {"plm_caption", "plm_action", "llama3_caption", "gpt"} & set(node)


def test_unknown_fields_survive_both_ways(official_row):
    row = copy.deepcopy(official_row)
    row["nodes"][3]["qwen_caption"] = "extra"
    row["split"] = "train"
    record = from_official(row)
    assert record.nodes[3].extra == {"qwen_caption": "extra"}
    assert to_official(VideoRecord.from_json(record.to_json())) == row


def test_official_rows_layouts(official_row):
    assert official_rows([official_row]) == [official_row]
    assert official_rows(official_row) == [official_row]
    with pytest.raises(RecordError, match="different lengths"):
        official_rows({"video_uid": ["a", "b"], "nodes": [[]]})


# -- validation -------------------------------------------------------------------------------------


def test_small_record_is_valid_and_knows_its_tree():
    record = small_record().validate()
    assert record.root.node_id == "root"
    assert [n.node_id for n in record.children()["a"]] == ["a1", "a2"]
    assert sorted(n.node_id for n in record.leaves()) == ["a1", "a2", "b"]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda r: setattr(r.nodes[4], "start", 1.6),
            r"node a: children do not tile: gap between a1 .* and a2",
        ),
        (lambda r: setattr(r.nodes[4], "start", 1.4), r"node a: children do not tile: overlap"),
        (
            lambda r: setattr(r.nodes[2], "end", 9.0),
            r"node root: children span \[0.0, 9.0\], parent \[0.0, 10.0\]",
        ),
        (lambda r: setattr(r.nodes[3], "level", 3), r"node a1: level 3 under a parent at level 1"),
        (lambda r: setattr(r.nodes[3], "parent_id", "zz"), r"node a1: parent zz is not in the record"),
        (lambda r: setattr(r.nodes[1], "parent_id", None), r"expected exactly one root node, found 2"),
        (lambda r: setattr(r.nodes[4], "node_id", "a1"), r"duplicate node_id a1"),
        (lambda r: r.metadata.update(duration=5), r"node root: ends at 10.0s, after the video's 5s"),
        (lambda r: setattr(r.nodes[3], "end", 0.0), r"node a1: span \[0.0, 0.0\] is empty"),
        (lambda r: setattr(r, "video_uid", "../etc"), r"invalid video_uid '../etc'"),
    ],
)
def test_validation_names_the_video_and_node(break_it, message):
    record = small_record()
    break_it(record)
    with pytest.raises(RecordError, match=message) as err:
        record.validate()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("uid", ["a/b", "..", "", "a b", "ü", None, 7, "x" * 129])
def test_bad_video_uids(uid):
    with pytest.raises(RecordError, match="invalid video_uid"):
        validate_video_uid(uid)


def test_the_longest_video_uid_is_a_file_name():
    assert validate_video_uid("x" * 128) == "x" * 128


def test_loading_checks_field_types():
    data = small_record().to_dict()
    data["nodes"][2]["start"] = "4.0"
    with pytest.raises(RecordError, match=r"video vid_01-x: node #2: start must be a finite number"):
        VideoRecord.from_dict(data)
    data = small_record().to_dict()
    del data["nodes"][1]["parent_id"]
    with pytest.raises(RecordError, match=r"node #1: missing 'parent_id'"):
        VideoRecord.from_dict(data)


def test_annotation_shape_is_strict():
    good = small_record().nodes[0].annotation.to_dict()
    assert Annotation.from_dict(good).action_brief == "stir mixture"
    bad = copy.deepcopy(good)
    del bad["action"]["actor"]
    with pytest.raises(RecordError, match=r"node x: annotation.action must have exactly the keys"):
        Annotation.from_dict(bad, "node x")
    bad = copy.deepcopy(good)
    bad["summary"]["brief"] = None
    with pytest.raises(RecordError, match=r"annotation.summary.brief must be a string"):
        Annotation.from_dict(bad)


def test_not_applicable_action():
    annotation = Annotation("A still shot of a table.", "Nothing moves.", "N/A", "N/A", "N/A")
    assert not annotation.has_action
    assert small_record().nodes[0].annotation.has_action


def test_unsupported_schema_version():
    data = small_record().to_dict()
    data["schema_version"] = 99
    with pytest.raises(RecordError, match="schema_version 99 is not supported"):
        VideoRecord.from_dict(data)


def test_unreadable_official_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(RecordError, match=r"broken\.json: cannot read"):
        read_official_json(path)
    path.write_text(json.dumps({"video_uid": "a/b", "nodes": []}))
    with pytest.raises(RecordError, match=r"broken\.json: invalid video_uid 'a/b'"):
        read_official_json(path)
