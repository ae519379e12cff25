import json

import pytest

from action100m.backends import GenerationConfig, HTTPConfig
from action100m.backends.http_backend import HTTPChatBackend
from action100m.backends.transformers_backend import TransformersImageCaptioner, TransformersVideoCaptioner
from action100m.dataset.schema import Node, VideoRecord
from action100m.synth.describer import DESCRIBER_ID, GroundTruthDescriber
from action100m.synth.generate import generate_dataset
from action100m.testing.fake_server import FakeChatServer
from action100m.tiny.backends import tiny_mllama, tiny_perception_lm
from action100m.video import DecordSource, open_video
from data_build.caption import CaptionConfig, caption_records, caption_synthetic
from data_build.segment import SegmentConfig, segment_videos


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two SynthActions videos, segmented with pixel features (fast), as records."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, videos=2, seed=3)
    manifest = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    paths = {m["video_uid"]: root / m["path"] for m in manifest}
    trees = segment_videos(
        [(uid, open_video(p)) for uid, p in paths.items()], SegmentConfig(features="pixel")
    )
    meta = {m["video_uid"]: m["metadata"] for m in manifest}
    return root, paths, [(t.video_uid, meta[t.video_uid], t.nodes) for t in trees]


def fresh_records(synth):
    """New records (captions empty) for each test, from the module's segmentation."""
    _, _, trees = synth
    return [
        VideoRecord(uid, dict(meta), [Node(n.node_id, n.parent_id, n.level, n.start, n.end) for n in nodes])
        for uid, meta, nodes in trees
    ]


def sources(synth, records, backend="decord"):
    _, paths, _ = synth
    return [(record, open_video(paths[record.video_uid], backend)) for record in records]


def assert_fully_captioned(record):
    leaves = {n.node_id for n in record.leaves()}
    for node in record.nodes:
        assert node.segment_caption and node.action_label
        assert bool(node.frame_caption) == (node.node_id in leaves)


def test_synthetic_describer_captions_every_node(synth):
    root = synth[0]
    records = fresh_records(synth)
    describer = GroundTruthDescriber.from_dir(root)
    result = caption_synthetic(records, describer.describe, DESCRIBER_ID)
    assert result.failures == []
    for record in records:
        assert_fully_captioned(record)
        assert record.provenance.models == dict.fromkeys(
            ("frame_caption", "segment_caption", "action_label"), DESCRIBER_ID
        )
        record.validate()
    assert any(n.action_label != "N/A" for n in records[0].nodes)


def test_tiny_transformers_models_caption_every_node(synth):
    records = fresh_records(synth)[:1]
    records[0].nodes = records[0].nodes[:15]  # a subtree-closed prefix (breadth first), for speed
    generation = GenerationConfig(max_new_tokens=4)
    image = TransformersImageCaptioner(*tiny_mllama(), model_id="tiny-mllama", generation=generation)
    video = TransformersVideoCaptioner(*tiny_perception_lm(), model_id="tiny-plm", generation=generation)
    cfg = CaptionConfig(frames_per_segment=4, segment_frame_size=32, image_short_side=32, batch_nodes=8)
    result = caption_records(sources(synth, records), cfg, image, video)
    assert result.failures == []
    assert_fully_captioned(records[0])
    assert records[0].provenance.models["segment_caption"] == "tiny-plm"
    assert records[0].provenance.extra["caption"]["frame_caption"]["model"] == "tiny-mllama"


def test_http_backend_against_a_local_server(synth):
    records = fresh_records(synth)
    nodes = sum(len(r.nodes) for r in records)
    leaves = sum(len(r.leaves()) for r in records)
    cfg = CaptionConfig(frames_per_segment=8, segment_frame_size=64)
    with FakeChatServer(model="plm") as server:
        http = HTTPConfig(base_url=server.base_url, concurrency=16, max_retries=0)
        with HTTPChatBackend("plm", http) as backend:
            result = caption_records(sources(synth, records), cfg, backend, backend)
        assert server.requests_total == leaves + 2 * nodes
        assert server.max_in_flight <= 16
    assert result.failures == []
    for record in records:
        assert_fully_captioned(record)
    sent = server.received[-1].body["messages"][-1]["content"]
    assert sum(part["type"] == "image_url" for part in sent) in (1, 8)


def test_failed_requests_are_recorded_per_node(synth):
    records = fresh_records(synth)[:1]
    total = len(records[0].nodes)
    script = ["ok"] * 3 + [500] * 4 + ["ok"] * 10_000
    with FakeChatServer(model="plm", script=script) as server:
        http = HTTPConfig(base_url=server.base_url, concurrency=1, max_retries=0, breaker_failures=0)
        with HTTPChatBackend("plm", http) as backend:
            result = caption_records(
                sources(synth, records), CaptionConfig(frames_per_segment=4, batch_nodes=4), None, backend
            )
    assert len(result.failures) == 4
    assert all(f.stage == "caption" and "500" in f.reason for f in result.failures)
    failed = {f.node_id for f in result.failures}
    captioned = [n for n in records[0].nodes if n.segment_caption is not None and n.action_label is not None]
    assert len(captioned) == total - len(failed)


def test_backend_down_fails_each_node_not_the_run(synth):
    records = fresh_records(synth)[:1]
    http = HTTPConfig(
        base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2, check_model=False, breaker_failures=0
    )
    with HTTPChatBackend("plm", http) as backend:
        result = caption_records(
            sources(synth, records), CaptionConfig(frames_per_segment=2), backend, backend
        )
    nodes, leaves = len(records[0].nodes), len(records[0].leaves())
    assert len(result.failures) == leaves + 2 * nodes
    assert all(f.retryable and f.server == "http://127.0.0.1:9/v1" for f in result.failures)
    assert all(n.segment_caption is None for n in records[0].nodes)


class CountingSource(DecordSource):
    decoded = 0

    def read_frames(self, indices):
        self.decoded += len(indices)
        return super().read_frames(indices)


def test_one_pass_decodes_each_needed_frame_once(synth):
    _, paths, _ = synth
    [record] = fresh_records(synth)[:1]
    video = CountingSource(paths[record.video_uid])
    with FakeChatServer(model="plm") as server:
        with HTTPChatBackend("plm", HTTPConfig(base_url=server.base_url)) as backend:
            result = caption_records(
                [(record, video)],
                CaptionConfig(frames_per_segment=32, segment_frame_size=32),
                backend,
                backend,
            )
    assert result.failures == []
    assert video.decoded == result.frames_decoded < result.frames_needed
    assert result.frames_decoded <= video.info.num_frames


def test_zero_length_nodes_and_unreadable_videos_fail_alone(synth, tmp_path):
    records = fresh_records(synth)
    records[0].nodes.append(Node("flat", records[0].nodes[0].node_id, 1, 3.0, 3.0))
    _, paths, _ = synth
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(paths[records[1].video_uid].read_bytes()[:5000])
    pairs = [(records[0], open_video(paths[records[0].video_uid])), (records[1], open_video(broken))]
    with FakeChatServer(model="plm") as server:
        with HTTPChatBackend("plm", HTTPConfig(base_url=server.base_url)) as backend:
            result = caption_records(pairs, CaptionConfig(frames_per_segment=2), backend, backend)
    reasons = {(f.video_uid, f.node_id): f.reason for f in result.failures}
    assert "zero-length span" in reasons[(records[0].video_uid, "flat")]
    assert sum(uid == records[1].video_uid for uid, _ in reasons) == len(records[1].nodes)
    assert all(n.segment_caption for n in records[0].nodes if n.node_id != "flat")
