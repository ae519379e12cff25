"""The CLIP-style baseline on a tiny random CLIP folder, and how encoders are chosen and refused."""

import hashlib

import pytest
import torch
import torch.nn.functional as F

from action100m.errors import ConfigError
from action100m.eval.encoders import CLIPEncoder, VideoTextEncoder, load_encoder, weights_sha256
from action100m.eval.errors import EvalError
from action100m.models.vljepa import VLJEPA


def test_clip_encoder_embeds_frames_and_texts(tiny_clip):
    encoder = CLIPEncoder(str(tiny_clip), num_frames=3)
    assert isinstance(encoder, VideoTextEncoder) and (encoder.crop_size, encoder.num_frames) == (32, 3)
    frames = torch.randint(0, 256, (3, 48, 64, 3), dtype=torch.uint8)
    clip = encoder.preprocess(frames)
    assert clip.shape == (3, 3, 32, 32)
    video = encoder.embed_video(clip[None])
    per_frame = F.normalize(encoder.model.get_image_features(pixel_values=clip).pooler_output, dim=-1)
    assert torch.allclose(video[0], F.normalize(per_frame.mean(dim=0), dim=0), atol=1e-5)
    texts = encoder.embed_text(["rotate the blue square clockwise", "a video of"])
    assert texts.shape == (2, 32) and texts.norm(dim=1).allclose(torch.ones(2))


def test_load_encoder_choices_and_errors(tiny_clip, tmp_path, monkeypatch):
    assert isinstance(load_encoder("clip", None, str(tiny_clip), 4, "cpu", "float32"), CLIPEncoder)
    with pytest.raises(ConfigError, match="encoder=clip needs encoder.model"):
        load_encoder("clip", None, None, 4, "cpu", "float32")
    with pytest.raises(ConfigError, match="cannot load CLIP-style model"):
        load_encoder("clip", None, str(tmp_path / "nothing"), 4, "cpu", "float32")
    with pytest.raises(ConfigError, match="encoder=vljepa needs checkpoint=PATH"):
        load_encoder("vljepa", None, None, 8, "cpu", "float32")
    with pytest.raises(ConfigError, match="unknown encoder kind 'x'"):
        load_encoder("x", None, None, 8, "cpu", "float32")


class _Checkpoint(torch.nn.Module):
    """Stands in for a VL-JEPA loaded from a checkpoint (the interface of issue 8)."""

    num_frames, crop_size = 8, 32

    def __init__(self, y_encoder):
        super().__init__()
        self.y_encoder = y_encoder
        self.head = torch.nn.Linear(2, 2)

    def embed_text(self, texts):
        return torch.ones(len(texts), 2)


def test_vljepa_checkpoint_needs_a_y_encoder(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"weights")
    monkeypatch.setattr(VLJEPA, "from_checkpoint", lambda p, map_location: _Checkpoint(None))
    with pytest.raises(EvalError, match="model.ckpt has no Y-encoder"):
        load_encoder("vljepa", str(path), None, 8, "cpu", "float32")
    with_text = _Checkpoint(torch.nn.Identity())
    monkeypatch.setattr(VLJEPA, "from_checkpoint", lambda p, map_location: with_text)
    assert load_encoder("vljepa", str(path), None, 8, "cpu", "float32").name == "vljepa:model.ckpt"
    assert weights_sha256(str(path)) == hashlib.sha256(b"weights").hexdigest()
