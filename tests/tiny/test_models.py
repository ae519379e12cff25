import torch

from action100m.tiny.models import tiny_llama, tiny_vjepa2, tiny_vjepa2_config


def test_tiny_vjepa2_encodes_a_clip_into_tubelet_tokens():
    config = tiny_vjepa2_config()
    model = tiny_vjepa2()
    clip = torch.randn(2, config.frames_per_clip, 3, config.crop_size, config.crop_size)
    with torch.no_grad():
        tokens = model(pixel_values_videos=clip, skip_predictor=True).last_hidden_state
    per_frame = (config.crop_size // config.patch_size) ** 2
    assert tokens.shape == (2, config.frames_per_clip // config.tubelet_size * per_frame, config.hidden_size)


def test_same_seed_same_weights():
    first, second = tiny_vjepa2(seed=3), tiny_vjepa2(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_tiny_llama_generates_with_the_trained_tokenizer(tiny_tokenizer):
    model = tiny_llama(tiny_tokenizer)
    batch = tiny_tokenizer(["rotate the blue square", "grow"], return_tensors="pt", padding=True)
    assert tiny_tokenizer.decode(batch["input_ids"][0]) == "rotate the blue square"
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)
