import json

import pytest
import torch

from action100m.models.config import model_preset
from action100m.models.vljepa import VLJEPA
from action100m.synth.generate import generate_dataset
from action100m.video import open_video
from action100m.video.sampling import uniform_indices


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VLJEPA(model_preset("tiny"))


def test_the_evaluation_interface(tiny):
    frames = torch.randint(0, 255, (8, 48, 64, 3), dtype=torch.uint8)
    clip = tiny.preprocess(frames)
    assert (tiny.num_frames, tiny.crop_size) == (8, 32) and clip.shape == (8, 3, 32, 32)
    videos = tiny.embed_video(torch.stack([clip, clip.flip(0)]))
    texts = tiny.embed_text(["rotate the blue square clockwise", "shake the red cross"])
    assert videos.shape == texts.shape == (2, 128)
    assert torch.allclose(videos.norm(dim=-1), torch.ones(2)) and torch.allclose(
        texts.norm(dim=-1), torch.ones(2)
    )
    image = tiny.embed_video(clip[:1].unsqueeze(0))  # an image: one frame, repeated to a tubelet
    assert torch.allclose(image, tiny.embed_video(clip[:1].expand(2, -1, -1, -1).unsqueeze(0)))
    other_query = tiny.embed_video(clip.unsqueeze(0), queries=["What is the object?"])
    assert not torch.allclose(other_query, videos[:1])


def test_frozen_parts_get_no_gradient_and_the_y_encoder_learns_slower():
    cfg = model_preset("tiny")
    cfg.y_encoder.freeze = False  # the paper's setting: trained, 20x slower than the rest
    model = VLJEPA(cfg).train()
    assert not model.x_encoder.encoder.training  # a frozen encoder stays in eval mode
    clips = torch.randn(3, 8, 3, 32, 32)
    loss, _ = model.loss(model.predict(clips), model.y_encoder(["stir", "cut the onion", "speak to camera"]))
    loss.backward()
    assert all(p.grad is None for p in model.x_encoder.parameters())
    assert all(
        p.grad is None for p in model.predictor.lm.embed_tokens.parameters()
    )  # frozen query embeddings
    assert all(p.grad is not None for p in model.predictor.lm.layers.parameters())
    assert all(p.grad is not None for p in model.y_encoder.encoder[0].auto_model.encoder.parameters())

    optimizer = model.configure_optimizers()["optimizer"]
    lr = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lr["y_encoder"] == pytest.approx(0.05 * lr["predictor"]) and lr["y_head"] == lr["predictor"]
    assert not any(name.startswith("x_encoder") for name in lr)
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    decay = {group["name"]: group["weight_decay"] for group in optimizer.param_groups}
    assert decay["temperature/no_decay"] == 0 and decay["predictor"] > 0


def synth_pairs(root, count):
    """`count` SynthActions steps with distinct labels: (clip frames, label)."""
    generate_dataset(root, videos=6, seed=11)
    pairs, seen = [], set()
    for line in (root / "ground_truth.jsonl").read_text().splitlines():
        truth = json.loads(line)
        source = open_video(root / "videos" / f"{truth['video_uid']}.mp4")
        info = source.info
        for step in truth["steps"]:
            if step["label"] not in seen and len(pairs) < count:
                seen.add(step["label"])
                indices = uniform_indices(step["start"], step["end"], info.fps, info.num_frames, 8)
                pairs.append((source.read_frames(indices), step["label"]))
    assert len(pairs) == count
    return pairs


@pytest.fixture
def one_thread():
    """As configs/trainer/cpu.yaml: idle intra-op threads of a tiny model spin on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_tiny_preset_overfits_16_synthactions_pairs(tmp_path, one_thread):
    torch.manual_seed(0)
    model = VLJEPA(model_preset("tiny")).train()
    pairs = synth_pairs(tmp_path, 16)
    clips = torch.stack([model.preprocess(frames) for frames, _ in pairs])
    texts = [label for _, label in pairs]
    model.optim_cfg.lr = 2e-3
    optimizer = model.configure_optimizers()["optimizer"]
    for _ in range(150):
        optimizer.zero_grad()
        loss, _ = model.loss(model.predict(clips), model.y_encoder(texts))
        loss.backward()
        optimizer.step()
    model.eval()
    similarity = model.embed_video(clips) @ model.embed_text(texts).T
    target = torch.arange(16)
    assert (similarity.argmax(dim=1) == target).float().mean().item() == 1.0  # video → text
    assert (similarity.argmax(dim=0) == target).float().mean().item() == 1.0  # text → video


@pytest.mark.parametrize("crop_size", [32, 64])
def test_every_token_is_rotated_by_its_own_tubelet_row_and_column(crop_size):
    # V-JEPA 2 reads a token's row and column from its index with its config's crop size; a clip of
    # another size (the demo's 64 px through the 32 px tiny encoder) got scrambled positions.
    cfg = model_preset("tiny")
    cfg.crop_size, cfg.num_frames = crop_size, 4
    model = VLJEPA(cfg)
    grid = crop_size // 8  # the tiny encoder's patch size
    tokens = model.x_encoder(torch.zeros(1, 4, 3, crop_size, crop_size))
    assert tokens.shape[1] == 2 * grid * grid
    tubelet, row, column = torch.meshgrid(
        torch.arange(2), torch.arange(grid), torch.arange(grid), indexing="ij"
    )
    for layer in model.x_encoder.encoder.layer:
        positions = layer.attention.get_position_ids(tokens)
        assert [p.tolist() for p in positions] == [
            tubelet.flatten().tolist(),
            row.flatten().tolist(),
            column.flatten().tolist(),
        ]
