"""Class embeddings (template averaging, one Y-encoder pass per prompt, the cache) and clip embeddings
(views, crops, failures never replaced) with a fake encoder."""

import torch
import torch.nn.functional as F

from action100m.eval.benchmarks import Clip
from action100m.eval.classifier import class_embeddings, clip_embeddings
from action100m.eval.data import ClipDataset, square_crops, view_spans
from tests.eval.conftest import stand_in


def test_class_embeddings_average_templates_then_normalise(fake_encoder):
    templates = ["{}", "a video of {}."]
    embeddings, info = class_embeddings(fake_encoder, ["stir mixture", "cut onion"], templates, batch_size=3)
    prompts = fake_encoder.embed_text(["stir mixture", "a video of stir mixture."])
    assert torch.allclose(embeddings[0], F.normalize(prompts.mean(dim=0), dim=0), atol=1e-6)
    assert embeddings.norm(dim=1).allclose(torch.ones(2))
    assert info == {"cache": None, "cache_hit": False, "texts_encoded": 4}


def test_class_embeddings_cached_per_model_and_templates(fake_encoder, tmp_path):
    args = (["a", "b", "c"], ["{}", "x {}"])
    first, info = class_embeddings(fake_encoder, *args, cache_dir=tmp_path, model_key="m1")
    assert (info["cache_hit"], fake_encoder.texts_embedded) == (False, 6)
    again, info = class_embeddings(fake_encoder, *args, cache_dir=tmp_path, model_key="m1")
    assert info["cache_hit"] and fake_encoder.texts_embedded == 6 and torch.equal(first, again)
    class_embeddings(fake_encoder, *args, cache_dir=tmp_path, model_key="m2")  # another checkpoint
    class_embeddings(
        fake_encoder, ["a", "b", "c"], ["{}"], cache_dir=tmp_path, model_key="m1"
    )  # other templates
    assert fake_encoder.texts_embedded == 6 + 6 + 3


def test_view_spans_and_square_crops():
    assert view_spans(0.0, 3.0, 3) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    frames = torch.arange(2 * 4 * 10 * 3, dtype=torch.uint8).view(2, 4, 10, 3)
    left, centre, right = square_crops(frames, 3)
    assert (
        left.shape == (2, 4, 4, 3)
        and torch.equal(centre, frames[:, :, 3:7])
        and torch.equal(right, frames[:, :, 6:])
    )
    assert square_crops(frames, 1)[0] is frames


def test_clip_embeddings_views_and_failures(fake_encoder, tmp_path):
    video = stand_in(tmp_path / "a.mp4", num_frames=30)
    clips = [
        Clip("whole", video, 0),
        Clip("missing", tmp_path / "gone.mp4", 0),
        Clip("late", video, 0, 10.0, 12.0),
        Clip("part", video, 1, 0.5, 2.5),
    ]
    dataset = ClipDataset(clips, fake_encoder.preprocess, num_frames=4, temporal_views=2, spatial_crops=3)
    assert dataset[0].views.shape == (6, 4, 3, 16, 16)
    result = clip_embeddings(fake_encoder, dataset, batch_size=3, workers=1, progress=False)
    assert result.indices == [0, 3] and result.embeddings.shape == (2, 3)
    assert [i for i, _ in result.failures] == [1, 2]
    assert "no such file" in result.failures[0][1] and "outside the video" in result.failures[1][1]
    single = ClipDataset(clips[:1], fake_encoder.preprocess, num_frames=4)
    expected = fake_encoder.embed_video(single[0].views)[0]
    alone = clip_embeddings(fake_encoder, single, workers=0, progress=False).embeddings[0]
    assert torch.allclose(alone, expected, atol=1e-6)
