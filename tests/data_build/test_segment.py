import numpy as np
import pytest
import torch

from action100m.dataset.schema import VideoRecord
from action100m.errors import ConfigError, StageError
from action100m.models.vjepa2 import load_vjepa2
from action100m.video import DecordSource, open_video
from data_build.segment import (
    PixelFeatures,
    SegmentConfig,
    VJEPA2Features,
    cut,
    kept_frame_boundaries,
    merges_to_tree,
    node_id,
    robust_motion,
    score_tree,
    segment_videos,
    tubelet_to_frames,
    ward_merges,
    window_starts,
)


def assert_tree_invariants(tree, duration):
    VideoRecord(tree.video_uid, {"duration": duration}, tree.nodes).validate(duration_tolerance=1e-9)
    root = tree.nodes[0]
    assert (root.parent_id, root.level, root.start, root.end) == (None, 0, 0.0, pytest.approx(duration))
    children = {}
    for node in tree.nodes[1:]:
        children.setdefault(node.parent_id, []).append(node)
    assert all(len(kids) == 2 for kids in children.values())
    assert len({n.node_id for n in tree.nodes}) == len(tree.nodes)


# -- windows --------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 63, 64, 65, 72, 73, 200])
def test_windows_cover_every_frame(num_frames):
    starts = window_starts(num_frames, 64, 8)
    covered = np.zeros(num_frames, dtype=int)
    for start in starts:
        assert start >= 0
        covered[start : start + 64] += 1
    assert covered.min() >= 1
    assert starts[-1] + min(64, num_frames) == num_frames  # the tail window ends flush with the video
    assert starts == sorted(set(starts))


def test_short_video_is_one_window_and_tail_gets_its_own():
    assert window_starts(40, 64, 8) == [0]
    assert window_starts(75, 64, 8) == [0, 8, 11]


def test_tubelet_tokens_stand_for_their_frames():
    tokens = torch.tensor([[1.0], [2.0], [3.0]])
    assert tubelet_to_frames(tokens, 2, 5).squeeze(1).tolist() == [1, 1, 2, 2, 3]


# -- the tree -------------------------------------------------------------------------------------


def test_boundaries_lie_halfway_between_kept_frames():
    assert kept_frame_boundaries(20, 10.0, 4).tolist() == pytest.approx([0.0, 0.2, 0.6, 1.0, 1.4, 2.0])
    # the paper's (4m + 2) / fps
    assert kept_frame_boundaries(400, 30.0, 4)[1:-1] == pytest.approx([(4 * m + 2) / 30 for m in range(99)])


@pytest.mark.parametrize("seed", range(6))
def test_invariants_hold_on_random_features(seed):
    rng = np.random.default_rng(seed)
    num_kept = int(rng.integers(2, 400))
    features = rng.normal(size=(num_kept, 5)).cumsum(axis=0)  # random walks: structure at every scale
    boundaries = kept_frame_boundaries(num_kept * 4, 25.0, 4)
    tree = merges_to_tree(f"vid{seed}", ward_merges(features), boundaries, min_duration=0.5)
    assert_tree_invariants(tree, num_kept * 4 / 25.0)
    children = {}
    for node in tree.nodes[1:]:
        children.setdefault(node.parent_id, []).append(node)
    assert all(min(k.duration for k in kids) >= 0.5 for kids in children.values())


def test_without_a_minimum_the_full_dendrogram_is_kept():
    features = np.random.default_rng(0).normal(size=(50, 3))
    tree = merges_to_tree("v", ward_merges(features), kept_frame_boundaries(200, 10.0, 4), min_duration=0.0)
    assert len(tree.nodes) == 2 * 50 - 1
    assert len(tree.merge_rank) == 49


def test_clusters_are_contiguous_and_follow_the_features():
    features = np.concatenate([np.zeros((10, 2)), np.full((10, 2), 5.0), np.zeros((10, 2))])
    tree = merges_to_tree("v", ward_merges(features), kept_frame_boundaries(120, 10.0, 4), min_duration=0.5)
    # the two zero blocks are far apart in time, so they may not merge before their neighbours do
    assert [(n.start, n.end) for n in cut(tree, 3)] == [(0.0, 3.8), (3.8, 7.8), (7.8, 12.0)]


def test_node_ids_are_stable_and_depend_on_video_and_span():
    assert node_id("v", 0.0, 1.5) == node_id("v", 0.0, 1.5)
    assert len({node_id("v", 0.0, 1.5), node_id("w", 0.0, 1.5), node_id("v", 0.0, 1.6)}) == 3


def test_cut_tiles_the_root_at_every_size():
    features = np.random.default_rng(1).normal(size=(60, 4)).cumsum(axis=0)
    tree = merges_to_tree("v", ward_merges(features), kept_frame_boundaries(240, 10.0, 4), min_duration=0.5)
    assert cut(tree, 1) == [tree.nodes[0]]
    for k in (2, 5, 9):
        spans = cut(tree, k)
        assert len(spans) == k
        assert spans[0].start == 0.0 and spans[-1].end == pytest.approx(24.0)
        assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))
    leaves = [n for n in tree.nodes if n.node_id not in tree.merge_rank]
    assert len(cut(tree, 10_000)) == len(leaves)


# -- end to end on real videos --------------------------------------------------------------------


class CountingSource(DecordSource):
    """A real decord source that counts the frames it is asked to decode."""

    decoded = 0

    def read_frames(self, indices):
        self.decoded += len(indices)
        return super().read_frames(indices)


def test_tiny_vjepa2_end_to_end_decodes_each_kept_frame_once(make_video):
    path = make_video(num_frames=400, fps=10, height=48, width=64)
    cfg = SegmentConfig(decode_chunk=16)
    extractor = VJEPA2Features(cfg)
    video = CountingSource(path)
    [tree] = segment_videos([("clip", video)], cfg, extractor)
    assert video.decoded == 100  # 1 of every 4 of 400 frames, each decoded once
    assert extractor.windows_encoded == len(window_starts(100, 64, 8))
    assert_tree_invariants(tree, 40.0)
    assert len(tree.nodes) > 3


def test_batching_across_videos_changes_nothing(make_video):
    paths = [
        make_video("a.mp4", num_frames=300),
        make_video("b.mp4", num_frames=130),
        make_video("c.mp4", 90),
    ]
    cfg = SegmentConfig(batch_windows=3)
    extractor = VJEPA2Features(cfg)
    together = extractor([open_video(p) for p in paths])
    alone = [extractor([open_video(p)])[0] for p in paths]
    for a, b in zip(together, alone, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_pixel_features_segment_without_an_encoder(make_video):
    path = make_video(num_frames=200, fps=10)
    cfg = SegmentConfig(features="pixel", min_duration=0.0)
    [features] = PixelFeatures(cfg)([open_video(path)])
    assert features.shape == (50, 2 * 3 * cfg.pixel_grid**2)  # colour and motion per grid cell
    [tree] = segment_videos([("p", open_video(path))], cfg)
    assert_tree_invariants(tree, 20.0)
    assert len(tree.nodes) == 99


def test_bad_videos_fail_alone(make_video, tmp_path):
    good = make_video("good.mp4", num_frames=120)
    one_frame = make_video("one.mp4", num_frames=3)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[:3000])
    cfg = SegmentConfig()
    results = segment_videos(
        [("good", open_video(good)), ("short", open_video(one_frame)), ("bad", open_video(corrupt))], cfg
    )
    assert results[0].nodes
    assert isinstance(results[1], StageError) and "fewer than two kept frames" in str(results[1])
    assert isinstance(results[2], StageError) and str(results[2]).startswith("video bad: segment:")


def test_nan_features_are_a_stage_error(make_video):
    class NaNFeatures:
        def __call__(self, videos):
            return [np.full((v.info.num_frames // 4, 3), np.nan) for v in videos]

    [result] = segment_videos([("n", open_video(make_video(num_frames=40)))], SegmentConfig(), NaNFeatures())
    assert isinstance(result, StageError) and "NaN" in str(result)


def test_unloadable_model_fails_fast_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot load V-JEPA 2 model '.*no-such-model'"):
        load_vjepa2(str(tmp_path / "no-such-model"))


def test_a_saved_encoder_loads_at_the_crop_size_it_is_run_at(tmp_path):
    # Rotary positions come from the config's crop size: it must be the clips' (see test_vljepa.py).
    load_vjepa2("tiny").save_pretrained(tmp_path / "encoder")
    assert load_vjepa2(str(tmp_path / "encoder"), crop_size=64).config.crop_size == 64
    assert load_vjepa2(str(tmp_path / "encoder")).config.crop_size == 32
    with pytest.raises(ConfigError, match=r"'tiny': crop size 60 is not a multiple of its patch size 8"):
        load_vjepa2("tiny", crop_size=60)


def test_robust_motion_ignores_one_frame_jumps_but_keeps_actions():
    still, jump, moving = [0.0] * 5, [0.0] * 5 + [9.0] * 5, [0.0] * 4 + [float(k) for k in range(1, 7)]
    cut_signal = robust_motion(torch.tensor(jump).unsqueeze(1), 1).squeeze(1)
    assert cut_signal.abs().max() == 0  # a scene cut changes everything once: not motion
    action = robust_motion(torch.tensor(moving).unsqueeze(1), 1).squeeze(1)
    assert action[:4].abs().max() == 0 and (action[5:] == 1).all()
    assert robust_motion(torch.tensor(still).unsqueeze(1), 2).abs().max() == 0


def test_score_tree_on_hand_made_trees():
    truth = {"duration": 10.0, "cuts": [], "steps": [{"start": 2.0, "end": 6.0}], "tasks": []}
    boundaries = np.array([0.0, 2.2, 6.1, 10.0])  # leaves [0, 2.2] [2.2, 6.1] [6.1, 10]
    merges = np.array([[1, 2], [0, 3]])  # the step merges with the pause after it, then the first pause
    tree = merges_to_tree("v", merges, boundaries, min_duration=0.5)
    score = score_tree(tree, truth, tolerance=0.5)
    assert score["f1"] == 1.0 and score["precision"] == 1.0
    assert score["miou"] == pytest.approx(3.8 / 4.1)  # [2, 6] against [2.2, 6.1]
    assert score_tree(tree, truth, tolerance=0.05)["f1"] == 0.0
    wrong = merges_to_tree("v", np.array([[0, 1], [3, 2]]), np.array([0.0, 1.0, 8.0, 10.0]), min_duration=0.5)
    assert score_tree(wrong, truth)["f1"] == 0.0
