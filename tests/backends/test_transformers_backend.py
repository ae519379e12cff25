"""The transformers backend on tiny random-init models of the paper's classes (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from action100m.backends import BackendError, GenerationConfig, TransformersConfig, VideoInput, build_backend
from action100m.backends.transformers_backend import (
    TransformersImageCaptioner,
    TransformersLLM,
    TransformersVideoCaptioner,
    final_channel,
)
from action100m.tiny.backends import tiny_llm

GREEDY = GenerationConfig(max_new_tokens=5)
CONVERSATIONS = [
    [{"role": "user", "content": "describe"}],
    [
        {"role": "system", "content": "answer with a short verb phrase"},
        {"role": "user", "content": "what action is the person performing in this video segment"},
    ],
    [{"role": "user", "content": "a person stirs the mixture"}],
    [{"role": "user", "content": "summary brief detailed action actor"}],
    [{"role": "user", "content": "bowl"}],
]


def settings(batch_size: int, **overrides) -> TransformersConfig:
    return TransformersConfig(batch_size=batch_size, **overrides)


@pytest.mark.parametrize("model_name", ["llama", "gpt_oss"])
def test_llm_batched_equals_one_at_a_time(model_name, request):
    model, tokenizer = request.getfixturevalue(model_name)
    batched = TransformersLLM(model, tokenizer, "tiny", GREEDY, settings(3)).complete(CONVERSATIONS)
    single = TransformersLLM(model, tokenizer, "tiny", GREEDY, settings(1)).complete(CONVERSATIONS)
    assert all(isinstance(text, str) for text in batched)
    assert batched == single
    # Prompts of different lengths are padded on the left, so the answers differ between prompts.
    assert len(set(batched)) > 1


def test_llm_describe_names_model_and_settings(llama):
    model, tokenizer = llama
    info = TransformersLLM(model, tokenizer, "tiny-llama", GREEDY, settings(2)).describe()
    assert info["backend"] == "transformers" and info["model"] == "tiny-llama"
    assert info["model_class"] == "LlamaForCausalLM" and info["trust_remote_code"] is False
    assert info["generation"]["max_new_tokens"] == GREEDY.max_new_tokens
    json.dumps(info)  # provenance goes into JSON records


@pytest.mark.parametrize("model_name", ["mllama", "perception_lm"])
def test_image_captions_batched_equal_one_at_a_time(model_name, request, images):
    model, processor = request.getfixturevalue(model_name)
    batched = TransformersImageCaptioner(model, processor, "tiny", GREEDY, settings(3))
    single = TransformersImageCaptioner(model, processor, "tiny", GREEDY, settings(1))
    texts = batched.caption_images(images, "describe this image in detail")
    assert all(isinstance(text, str) and text for text in texts)
    assert len(set(texts)) > 1  # the toy models do look at the image
    assert texts == single.caption_images(images, "describe this image in detail")


@pytest.mark.parametrize(
    "model_name, mode, expected",
    [
        ("perception_lm", VideoInput.auto, VideoInput.video),  # PLM's processor has a video processor
        ("perception_lm", VideoInput.images, VideoInput.images),
        ("mllama", VideoInput.auto, VideoInput.images),  # Llama-3.2-Vision sees a clip as frames
    ],
)
def test_video_captions_batched_equal_one_at_a_time(model_name, mode, expected, request, clips):
    model, processor = request.getfixturevalue(model_name)
    batched = TransformersVideoCaptioner(model, processor, "tiny", GREEDY, settings(2, video_input=mode))
    single = TransformersVideoCaptioner(model, processor, "tiny", GREEDY, settings(1, video_input=mode))
    assert batched.video_input == expected and batched.describe()["video_input"] == expected.value
    texts = batched.caption_videos(clips, "describe what happens in this video segment")
    assert all(isinstance(text, str) and text for text in texts)
    assert texts == single.caption_videos(clips, "describe what happens in this video segment")


def test_a_video_input_the_processor_cannot_take_is_refused_at_start(mllama):
    """Mllama's processor has no video processor: it used to drop the clip and caption the text alone."""
    model, processor = mllama
    with pytest.raises(BackendError, match="video_input=video: MllamaProcessor has no video processor"):
        TransformersVideoCaptioner(
            model, processor, "tiny", GREEDY, settings(2, video_input=VideoInput.video)
        )


def test_bad_inputs_fail_alone_in_their_place(perception_lm, images, clips):
    model, processor = perception_lm
    captioner = TransformersImageCaptioner(model, processor, "tiny", GREEDY, settings(4))
    texts = captioner.caption_images([images[0], images[1].float(), images[2]], "describe")
    assert isinstance(texts[0], str) and isinstance(texts[2], str)
    assert isinstance(texts[1], BackendError) and "uint8" in str(texts[1])
    video = TransformersVideoCaptioner(model, processor, "tiny", GREEDY, settings(4))
    texts = video.caption_videos([clips[0], clips[0][0], clips[1]], "describe")
    assert [type(text) for text in texts] == [str, BackendError, str]


def test_a_failing_batch_is_retried_item_by_item(llama, monkeypatch):
    model, tokenizer = llama
    llm = TransformersLLM(model, tokenizer, "tiny", GREEDY, settings(4))
    generate = llm._generate

    def fails_on_bowl(inputs):  # stands in for an input the model chokes on, or out of memory
        if "bowl" in " ".join(tokenizer.batch_decode(inputs["input_ids"])):
            raise RuntimeError("boom")
        return generate(inputs)

    monkeypatch.setattr(llm, "_generate", fails_on_bowl)
    texts = llm.complete(CONVERSATIONS)
    assert [isinstance(text, BackendError) for text in texts] == [False, False, False, False, True]
    assert "RuntimeError: boom" in str(texts[4])


def test_sampling_with_a_seed_repeats(llama):
    model, tokenizer = llama
    sampling = GenerationConfig(max_new_tokens=5, do_sample=True, temperature=1.5, seed=7)
    llm = TransformersLLM(model, tokenizer, "tiny", sampling, settings(2))
    assert llm.complete(CONVERSATIONS[:2]) == llm.complete(CONVERSATIONS[:2])


def test_harmony_final_channel_is_the_answer():
    raw = (
        "<|channel|>analysis<|message|>The user wants JSON.<|end|><|start|>assistant"
        '<|channel|>final<|message|>{"action": "stir"}<|return|><|endoftext|>'
    )
    assert final_channel(raw) == '{"action": "stir"}'
    assert final_channel("<|channel|>analysis<|message|>still thinking when tokens ran out") is None


def test_a_tokenizer_without_chat_template_fails_at_construction(llama):
    model, tokenizer = llama
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    with pytest.raises(BackendError, match="no chat template"):
        TransformersLLM(model, bare, "tiny-bare")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, llama, perception_lm) -> dict[str, Path]:
    """The tiny models written as HF directories, to load back through the Auto classes."""
    paths = {}
    for name, (model, processor) in {"llama": llama, "perception_lm": perception_lm}.items():
        paths[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(paths[name])
        processor.save_pretrained(paths[name])
    return paths


def test_build_backend_loads_local_directories(saved, llama, clips):
    llm = build_backend(
        {"interface": "llm", "model": str(saved["llama"]), "generation": {"max_new_tokens": 5}}
    )
    assert isinstance(llm, TransformersLLM) and llm.describe()["dtype"] == "float32"
    model, tokenizer = llama
    assert llm.complete(CONVERSATIONS) == TransformersLLM(model, tokenizer, "tiny", GREEDY).complete(
        CONVERSATIONS
    )
    video = build_backend({"interface": "video_captioner", "model": str(saved["perception_lm"])})
    assert isinstance(video, TransformersVideoCaptioner) and video.video_input == VideoInput.video
    assert all(isinstance(text, str) for text in video.caption_videos(clips[:1], "describe"))


@pytest.mark.parametrize(
    "model_id", ["nobody/no-such-model-action100m", "/nonexistent/models/llama", "./models/missing"]
)
def test_a_bad_model_id_fails_fast_naming_it(model_id):
    cfg = {"interface": "llm", "model": model_id, "transformers": {"local_files_only": True}}
    with pytest.raises(
        BackendError, match="no-such-model-action100m|/nonexistent/models/llama|models/missing"
    ):
        build_backend(cfg)


def test_a_model_of_the_wrong_kind_fails_naming_it(saved):
    with pytest.raises(BackendError, match="cannot load") as err:
        build_backend({"interface": "image_captioner", "model": str(saved["llama"])})
    assert str(saved["llama"]) in str(err.value)


def test_remote_code_is_not_run_unless_trusted(tmp_path):
    marker = tmp_path / "code_ran"
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "action100m_custom",
                "auto_map": {
                    "AutoConfig": "configuration_custom.CustomConfig",
                    "AutoModelForCausalLM": "modeling_custom.CustomModel",
                },
            }
        )
    )
    (tmp_path / "configuration_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    assert TransformersConfig().trust_remote_code is False
    with pytest.raises(BackendError, match="trust_remote_code"):
        build_backend({"interface": "llm", "model": str(tmp_path)})
    assert not marker.exists()


def test_an_empty_reply_is_an_error():
    model, tokenizer = tiny_llm()
    eos = tokenizer.eos_token_id
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i != eos]  # only EOS left
    texts = TransformersLLM(model, tokenizer, "tiny", GREEDY).complete(CONVERSATIONS[:2])
    assert all(isinstance(text, BackendError) and "empty output" in str(text) for text in texts)


@pytest.mark.parametrize(
    "model_name, video_input",
    [("mllama", None), ("perception_lm", VideoInput.video), ("perception_lm", VideoInput.images)],
)
def test_captioner_prompts_carry_one_bos(model_name, video_input, request, images, clips, monkeypatch):
    """As with the real Llama-3 tokenizers, the chat template writes the BOS and the tokenizer adds one
    by default: the prompt must still begin with a single BOS."""
    from tokenizers.processors import TemplateProcessing

    model, processor = request.getfixturevalue(model_name)
    tokenizer = processor.tokenizer
    saved = tokenizer.backend_tokenizer.post_processor, processor.chat_template
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos[0]} $A", special_tokens=[bos]
    )
    processor.chat_template = "{{ bos_token }}" + processor.chat_template
    try:
        assert tokenizer("describe")["input_ids"][0] == bos[1]  # the tokenizer does add one
        if video_input is None:
            captioner = TransformersImageCaptioner(model, processor, "tiny", GREEDY, settings(2))
            call = lambda: captioner.caption_images(images[:2], "describe")  # noqa: E731
        else:
            captioner = TransformersVideoCaptioner(
                model, processor, "tiny", GREEDY, settings(2, video_input=video_input)
            )
            call = lambda: captioner.caption_videos(clips[:2], "describe")  # noqa: E731
        prompts = []
        generate = captioner._generate
        monkeypatch.setattr(
            captioner, "_generate", lambda inputs: prompts.append(inputs["input_ids"]) or generate(inputs)
        )
        call()
        assert prompts
        for ids in prompts:
            for row in ids.tolist():
                start = next(i for i, token in enumerate(row) if token != tokenizer.pad_token_id)
                assert row[start] == bos[1] and row[start + 1] != bos[1], tokenizer.decode(
                    row[start : start + 3]
                )
    finally:
        tokenizer.backend_tokenizer.post_processor, processor.chat_template = saved
