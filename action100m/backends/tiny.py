"""Tiny random-init models of the paper's backend classes, with processors built in-process.

Llama-3.2-Vision (Mllama) for frame captions, Perception-LM for segment captions and action labels,
Llama and GPT-OSS for refinement: the real model and processor code at toy sizes, no downloads. Their
text is meaningless; batching, chat templates, padding and media preprocessing are the real ones.
Each builder returns (model, processor or tokenizer), ready for the transformers backend or for
`save_pretrained` into a directory that the Auto classes load back.
"""

from __future__ import annotations

from collections.abc import Iterable
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

from action100m.tiny_models import SPECIAL_TOKENS, tiny_llama, train_word_tokenizer

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
    return dict(initializer_range=0.3,
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip


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
        **_text_settings(tokenizer), head_dim=8, num_local_experts=4, num_experts_per_tok=2,
        sliding_window=16, layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    torch.manual_seed(seed)
    return _words_only(GptOssForCausalLM(config).eval(), tokenizer), tokenizer


def tiny_mllama(seed: int = 0, image_size: int = 32) -> tuple[torch.nn.Module, MllamaProcessor]:
    """Llama-3.2-Vision's architecture: a tiled ViT feeding cross-attention layers of a Llama."""
    tokenizer = tiny_tokenizer()
    vision = dict(
        hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=64,
        vision_output_dim=64, image_size=image_size, patch_size=8, max_num_tiles=1,
        intermediate_layers_indices=[0], supported_aspect_ratios=[[1, 1]],
    )  # fmt: skip
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
        architecture="vit_pe_core_tiny_patch16_384", do_pooling=False,
        model_args={"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": [image_size, image_size],
                    "ref_feat_shape": [image_size // patch, image_size // patch]},
    )  # fmt: skip
    config = PerceptionLMConfig(
        vision_config=vision, text_config=LlamaConfig(**_text_settings(tokenizer)), projector_pooling_ratio=1,
        image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.video_token_id,
    )  # fmt: skip
    size = {"height": image_size, "width": image_size}
    processor = PerceptionLMProcessor(
        image_processor=PerceptionLMImageProcessor(
            tile_size=image_size, vision_input_type="vanilla", max_num_tiles=1, size=size
        ),
        video_processor=PerceptionLMVideoProcessor(size=size),
        tokenizer=tokenizer, patch_size=patch, pooling_ratio=1, chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    torch.manual_seed(seed)
    return _words_only(PerceptionLMForConditionalGeneration(config).eval(), tokenizer), processor
