"""The tiny LLM directory for real servers: a Llama with a byte-level BPE tokenizer and Llama 3's
chat template, saved by the project (no download), loaded back by the Auto classes."""

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from action100m.cli import main
from action100m.tiny.backends import tiny_llm_dir


def test_same_seed_same_bytes_and_the_auto_classes_load_it(tmp_path):
    first, second, other = (
        tiny_llm_dir(tmp_path / name, seed=seed) for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    names = sorted(path.name for path in first.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()

    config = json.loads((first / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 2
    assert config["hidden_size"] == 128 and config["head_dim"] >= 32  # vLLM's CPU attention: ≥ 32
    tokenizer = AutoTokenizer.from_pretrained(first)
    model = AutoModelForCausalLM.from_pretrained(first)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "describe the video"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ndescribe the video"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    text = '{"summary": {"brief": "é\\n"}}'  # byte-level: any text round-trips, JSON included
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        probabilities = model(ids).logits[0, -1].softmax(-1)
    quote = tokenizer.convert_tokens_to_ids('"')
    vocab = tokenizer.get_vocab().items()
    blanks = [i for token, i in vocab if not tokenizer.convert_tokens_to_string([token]).strip()]
    assert 0.05 < float(probabilities[quote]) < 0.5  # strings under a schema end soon (~0.1 here)
    assert float(probabilities[blanks].sum()) < 1e-3  # and few blanks between JSON tokens


def test_the_cli_writes_it(tmp_path, capsys):
    assert main(["tiny-model", "llm", "--out", str(tmp_path / "m"), "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (
        tiny_llm_dir(tmp_path / "again", seed=3) / "model.safetensors"
    ).read_bytes()
