"""Tiny random-init models of the paper's backend classes, with processors built in-process.

Llama-3.2-Vision (Mllama) for frame captions, Perception-LM for segment captions and action labels,
Llama and GPT-OSS for refinement: the real model and processor code at toy sizes, no downloads. Their
text is meaningless; batching, chat templates, padding and media preprocessing are the real ones.
Each builder returns (model, processor or tokenizer), ready for the transformers backend or for
`save_pretrained` into a directory that the Auto classes load back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GptOssConfig,
    GptOssForCausalLM,
    LlamaConfig,
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessor,
    MllamaProcessor,
    PerceptionLMConfig,
    PerceptionLMForConditionalGeneration,
    PerceptionLMImageProcessor,
    PerceptionLMProcessor,
    PerceptionLMVideoProcessor,
    PreTrainedTokenizerFast,
    TimmWrapperConfig,
)

from action100m.tiny.models import SPECIAL_TOKENS, tiny_llama, tiny_text_settings, train_word_tokenizer

IMAGE_TOKEN, VIDEO_TOKEN = "<|image|>", "<|video|>"

# A minimal chat template: the real models ship their own, a word-level toy tokenizer has none.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|image|> {% elif part['type'] == 'video' %}<|video|> "
    "{% else %}{{ part['text'] }} {% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

CORPUS = [
    "describe this image in detail",
    "describe what happens in this video segment",
    "what action is the person performing answer with a short verb phrase",
    "a person stirs the mixture in a bowl and speaks to the camera",
    "summary brief detailed action actor n/a",
]


def tiny_tokenizer(corpus: Iterable[str] = CORPUS, media_tokens: bool = True) -> PreTrainedTokenizerFast:
    """The project's word-level toy tokenizer, plus image/video placeholder tokens and a chat template."""
    backend = train_word_tokenizer(corpus).backend_tokenizer
    extra: dict[str, str] = {}
    if media_tokens:
        backend.add_special_tokens([IMAGE_TOKEN, VIDEO_TOKEN])
        extra = {"image_token": IMAGE_TOKEN, "video_token": VIDEO_TOKEN}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, extra_special_tokens=extra, **SPECIAL_TOKENS
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_settings(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    # A wide initialisation, so that a toy model's answer depends on its prompt and image: tests can
    # then tell when a batch mixes up or pads its items wrongly.
    return dict(tiny_text_settings(tokenizer), initializer_range=0.3)


def _words_only(model: Any, tokenizer: PreTrainedTokenizerFast) -> Any:
    """Never generate special tokens: an untrained model would often stop at once or emit only
    placeholders; words up to `max_new_tokens` give every reply the same, non-empty length."""
    model.generation_config.suppress_tokens = tokenizer.all_special_ids
    return model


def tiny_llm(seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    tokenizer = tiny_tokenizer(media_tokens=False)
    return _words_only(tiny_llama(tokenizer, seed=seed), tokenizer), tokenizer


def tiny_gpt_oss(seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """GPT-OSS (mixture of experts, alternating sliding/full attention) at toy width."""
    tokenizer = tiny_tokenizer(media_tokens=False)
    config = GptOssConfig(
        **_text_settings(tokenizer),
        head_dim=8,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
    )
    torch.manual_seed(seed)
    return _words_only(GptOssForCausalLM(config).eval(), tokenizer), tokenizer


def tiny_mllama(seed: int = 0, image_size: int = 32) -> tuple[torch.nn.Module, MllamaProcessor]:
    """Llama-3.2-Vision's architecture: a tiled ViT feeding cross-attention layers of a Llama."""
    tokenizer = tiny_tokenizer()
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=2,
        intermediate_size=64,
        vision_output_dim=64,
        image_size=image_size,
        patch_size=8,
        max_num_tiles=1,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1]],
    )
    text = dict(_text_settings(tokenizer), cross_attention_layers=[1])
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id)
    image_processor = MllamaImageProcessor(
        size={"height": image_size, "width": image_size}, max_image_tiles=1
    )
    processor = MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()
    # Mllama starts its cross-attention gates at 0 (the image has no effect until trained); open them.
    for name, parameter in model.named_parameters():
        if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
            parameter.data.fill_(1.0)
    return _words_only(model, tokenizer), processor


def tiny_perception_lm(seed: int = 0, image_size: int = 32) -> tuple[torch.nn.Module, PerceptionLMProcessor]:
    """Perception-LM's architecture: a timm PE-core ViT and a projector into a Llama; images and videos."""
    tokenizer = tiny_tokenizer()
    patch = 16
    vision = TimmWrapperConfig(
        architecture="vit_pe_core_tiny_patch16_384",
        do_pooling=False,
        model_args={
            "embed_dim": 32,
            "depth": 1,
            "num_heads": 2,
            "img_size": [image_size, image_size],
            "ref_feat_shape": [image_size // patch, image_size // patch],
        },
    )
    config = PerceptionLMConfig(
        vision_config=vision,
        text_config=LlamaConfig(**_text_settings(tokenizer)),
        projector_pooling_ratio=1,
        image_token_id=tokenizer.image_token_id,
        video_token_id=tokenizer.video_token_id,
    )
    size = {"height": image_size, "width": image_size}
    processor = PerceptionLMProcessor(
        image_processor=PerceptionLMImageProcessor(
            tile_size=image_size, vision_input_type="vanilla", max_num_tiles=1, size=size
        ),
        video_processor=PerceptionLMVideoProcessor(size=size),
        tokenizer=tokenizer,
        patch_size=patch,
        pooling_ratio=1,
        chat_template=CHAT_TEMPLATE,
    )
    torch.manual_seed(seed)
    return _words_only(PerceptionLMForConditionalGeneration(config).eval(), tokenizer), processor


# --- Tiny model directories for a real server (vLLM): a Llama-3-shaped LLM saved to disk -----------

# Llama 3's chat template, with its special tokens and a bos at the start (trimmed contents, as
# Llama 3's own template does); a list content keeps its text parts.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] | trim }}"
    "{% endif %}{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
]


def _bpe_corpus() -> list[str]:
    """What the byte-level BPE learns its merges from: the refine prompt's instructions, the answer's
    JSON, and the captions' words, so that the project's prompts take few tokens."""
    import json

    from action100m.refine.prompt import _V1_SYSTEM

    answer = {
        "summary": {"brief": "a person stirs", "detailed": "a person stirs the mixture"},
        "action": {"brief": "stir the mixture", "detailed": "stirs it", "actor": "a person"},
    }
    return [_V1_SYSTEM, json.dumps(answer), json.dumps(answer, indent=2), *CORPUS]


def byte_level_bpe_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (as Llama 3's and GPT-OSS's are) trained in-process, with Llama 3's
    special tokens and chat template: it can spell any text, JSON included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA3_SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(_bpe_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        model_max_length=2048,
    )
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    return tokenizer


def _close_strings_soon(model: Any, tokenizer: PreTrainedTokenizerFast, quote_probability: float) -> None:
    """Give the bare `"` token a fixed extra logit, so that about `quote_probability` of the
    next-token mass falls on it wherever the model is, and whitespace-only tokens almost none.

    Measured through vLLM's guidance backend (32-256 requests): a uniform random model under a JSON
    schema ends a string only when it happens to pick a quote token the grammar allows, so replies ran
    to 350-1000 tokens and some to any max_tokens; the grammar also allows any whitespace between
    tokens, and a random model filled those gaps with dozens of blanks. A `"` ends any string (and
    opens every key), so with this bias strings end after ~1/quote_probability tokens.

    How: every position's residual stream carries a constant 1 in dimension 0 (the embeddings'
    column 0), which dominates the final RMS norm; the output rows of `"` and of the whitespace-only
    tokens read it. The rest of the model stays random."""
    texts = {i: tokenizer.convert_tokens_to_string([token]) for token, i in tokenizer.get_vocab().items()}
    quote = tokenizer.convert_tokens_to_ids(tokenizer.tokenize('"'))
    blanks = [i for i, text in texts.items() if text and not text.strip()]
    others = len(texts) - 1 - len(blanks)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        hidden = model.config.hidden_size**0.5  # dimension 0 after the final norm: ~sqrt(hidden)
        # e^b / (e^b + others) = p
        quote_bias = math.log(quote_probability * others / (1 - quote_probability))
        # all blanks together weigh about as much as 1/10000 of the other tokens
        blank_bias = math.log(1e-4 * others / len(blanks))
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[quote, 0] = quote_bias / hidden
        model.lm_head.weight[blanks, 0] = blank_bias / hidden


def tiny_bpe_llm(
    seed: int = 0, max_position_embeddings: int = 2048, quote_probability: float = 0.25
) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A random-init 2-layer Llama (hidden 128, 4 heads of 32: vLLM's CPU attention needs head sizes
    ≥ 32) and its byte-level BPE tokenizer, which can spell JSON (`build=tiny`'s LLM; `tiny_llm_dir`
    saves it for a real server).

    Its text is meaningless, with one bias (`_close_strings_soon`): about `quote_probability` of each
    step's mass on `"` and next to none on blanks, so that JSON under a schema ends after a few
    tokens a string and an answer fits a small max_tokens."""
    from transformers import GenerationConfig as HFGenerationConfig
    from transformers import LlamaForCausalLM

    tokenizer = byte_level_bpe_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[ids("<|eot_id|>"), ids("<|end_of_text|>")],
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    _close_strings_soon(model, tokenizer, quote_probability)
    model.generation_config = HFGenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    return model, tokenizer


def tiny_llm_dir(
    out: str | Path, seed: int = 0, max_position_embeddings: int = 2048, quote_probability: float = 0.25
) -> Path:
    """`tiny_bpe_llm` saved with `save_pretrained` into `out`: a directory that AutoModelForCausalLM /
    AutoTokenizer load and `vllm serve` serves. Same seed, same bytes."""
    model, tokenizer = tiny_bpe_llm(seed, max_position_embeddings, quote_probability)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


# The tiny model of each TINY_MODELS name that `save_tiny_model` saves: the stand-ins of the paper's
# architectures for a real engine (action100m/backends/support.py asks vLLM about them).
SAVED_MODELS = {
    "tiny-mllama": tiny_mllama,
    "tiny-perception-lm": tiny_perception_lm,
    "tiny-gpt-oss": tiny_gpt_oss,
    "tiny-llama-bpe": tiny_bpe_llm,
}


def save_tiny_model(name: str, out: str | Path, seed: int = 0) -> Path:
    """The tiny model `name` (a key of SAVED_MODELS) and its processor or tokenizer, saved with
    `save_pretrained` into `out`: a directory the Auto classes and vLLM load."""
    if name == "tiny-llama-bpe":
        return tiny_llm_dir(out, seed=seed)
    model, processor = SAVED_MODELS[name](seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
