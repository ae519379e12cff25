"""The three interfaces served by local transformers models: any HF hub id or local directory.

Loading goes through the Auto classes (causal LM for the LLM, image-text-to-text for the captioners)
with `trust_remote_code` off unless the config turns it on. Prompts are rendered with the
processor's or tokenizer's own chat template, padded on the left and generated in batches of
`batch_size`. A batch that fails (an odd input, out of memory) is retried one item at a time, so only
the items that fail on their own come back as `BackendError`s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    LogitsProcessorList,
)

from action100m.backends.base import (
    LLM,
    Backend,
    BackendError,
    GenerationConfig,
    ImageCaptioner,
    Message,
    VideoCaptioner,
    check_clip,
    check_image,
)
from action100m.backends.config import TransformersConfig, VideoInput

log = logging.getLogger(__name__)
T = TypeVar("T")

# GPT-OSS answers in the harmony format: reasoning on the "analysis" channel, the answer on "final".
HARMONY_CHANNEL, HARMONY_ENDS = "<|channel|>", ("<|return|>", "<|end|>")
HARMONY_FINAL = f"{HARMONY_CHANNEL}final<|message|>"


class TransformersBackend(Backend):
    """Shared by the three interfaces: loading, devices, batched generation, decoding."""

    kind = "transformers"
    auto_model: Any = AutoModelForCausalLM
    auto_processor: Any = AutoTokenizer

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        model_id: str,
        generation: GenerationConfig | None = None,
        settings: TransformersConfig | None = None,
    ) -> None:
        """Wrap an already-built model (used as is, on its device) and its processor or tokenizer."""
        self.model_id = model_id
        self.generation = generation or GenerationConfig()
        self.settings = settings or TransformersConfig()
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(processor, "chat_template", None) is None:
            raise self.error("the processor/tokenizer has no chat template; set `chat_template` on it")
        self._harmony = HARMONY_CHANNEL in self.tokenizer.get_vocab()

    @classmethod
    def from_pretrained(
        cls: type[T],
        model_id: str,
        settings: TransformersConfig | None = None,
        generation: GenerationConfig | None = None,
    ) -> T:
        """Load `model_id` (hub id or local directory); a bad id fails at once, naming the id."""
        settings = settings or TransformersConfig()
        model, processor = _load(cls, model_id, settings)  # type: ignore[arg-type]
        return cls(model, processor, model_id, generation, settings)  # type: ignore[call-arg]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        settings = {key: getattr(value, "value", value) for key, value in asdict(self.settings).items()}
        return {
            **super().describe(), **settings, "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device), "model_class": type(self.model).__name__,
            "transformers_version": transformers.__version__,
        }  # fmt: skip

    def _batched(
        self,
        items: Sequence[T],
        prepare: Callable[[list[T]], Any],
        order: Sequence[int] | None = None,
        group: Callable[[T], Any] | None = None,
    ) -> list[str | BackendError]:
        """Generate for `items` in batches, isolating the items that fail.

        `order`: the order to batch them in; `group`: items whose keys differ never share a batch.
        """
        order = list(order) if order is not None else list(range(len(items)))
        keys = [group(item) for item in items] if group else [None] * len(items)
        if group:
            order.sort(key=keys.__getitem__)  # stable: keeps `order` within a group
        results: list[str | BackendError | None] = [None] * len(items)
        for chunk in _chunks(order, max(1, self.settings.batch_size), keys):
            batch = [items[i] for i in chunk]
            for index, text in zip(chunk, self._isolating(batch, prepare), strict=True):
                results[index] = text
        return results  # type: ignore[return-value]

    def _isolating(self, batch: list[T], prepare: Callable[[list[T]], Any]) -> list[str | BackendError]:
        """Generate for one batch; if it fails, for each item alone, so only the culprits fail."""
        try:
            return self._generate(prepare(batch))
        except Exception as err:  # noqa: BLE001 - any failure becomes the item's error, never the batch's
            if len(batch) == 1:
                return [self.error(f"{type(err).__name__}: {err}")]
            log.warning("%s: batch of %d failed (%s); retrying one by one", self.model_id, len(batch), err)
            return [self._isolating([item], prepare)[0] for item in batch]

    def _generate(self, inputs: Any) -> list[str | BackendError]:
        g = self.generation
        kwargs: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, do_sample=g.do_sample)
        if g.do_sample:
            kwargs.update(temperature=g.temperature, top_p=g.top_p)
            if g.seed is not None:
                torch.manual_seed(g.seed)
        else:  # greedy: clear sampling defaults a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        inputs = inputs.to(self.device)
        prompt_length = inputs["input_ids"].shape[1]
        processors = self._logits_processors(prompt_length)
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs, pad_token_id=self.tokenizer.pad_token_id)
        new_tokens = output[:, prompt_length:]
        if self._harmony:
            return [self._final_answer(text) for text in self.tokenizer.batch_decode(new_tokens)]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [self._non_empty(text.strip()) for text in texts]

    def _logits_processors(self, prompt_length: int) -> list[Any]:
        """Processors that steer decoding (constrained JSON, in constrained.py); none by default."""
        return []

    def _final_answer(self, raw: str) -> str | BackendError:
        text = final_channel(raw)
        if text is None:
            return self.error("no final answer: the reasoning used up max_new_tokens")
        return self._non_empty(text)

    def _non_empty(self, text: str) -> str | BackendError:
        # As the HTTP backend does: an empty reply is a failure to record, not a caption.
        return text or self.error("empty output: the model ended its reply at once")

    def _chat_text(self, messages: list[Message]) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class TransformersLLM(TransformersBackend, LLM):
    """A causal LM and its tokenizer. `json_schema` is not enforced here: validate the reply."""

    auto_model = AutoModelForCausalLM
    auto_processor = AutoTokenizer

    def complete(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None = None
    ) -> list[str | BackendError]:
        texts = [self._chat_text(conversation) for conversation in conversations]
        # Similar lengths in one batch waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

        def prepare(batch: list[str]) -> Any:
            return self.tokenizer(batch, padding=True, return_tensors="pt", add_special_tokens=False)

        return self._batched(texts, prepare, order)


class _MediaCaptioner(TransformersBackend):
    auto_model = AutoModelForImageTextToText
    auto_processor = AutoProcessor

    def _media_batch(self, texts: list[str], **media: Any) -> Any:
        # The chat template already wrote the special tokens (Llama's begins with <|begin_of_text|>):
        # the tokenizer's own would put a second BOS in front, as the LLM path avoids too.
        tensors = self.processor(
            text=texts, padding=True, return_tensors="pt", add_special_tokens=False, **media
        )
        return tensors.to(dtype=self.model.dtype)  # casts only the floating-point pixels


class TransformersImageCaptioner(_MediaCaptioner, ImageCaptioner):
    """An image-text-to-text model and its processor (Llama-3.2-Vision, Perception-LM, ...)."""

    def caption_images(self, images: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        text = self._chat_text(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        )

        def prepare(batch: list[torch.Tensor]) -> Any:
            return self._media_batch(
                [text] * len(batch), images=[[image.permute(2, 0, 1)] for image in batch]
            )

        return _skip_invalid(images, check_image, self.error, lambda valid: self._batched(valid, prepare))


class TransformersVideoCaptioner(_MediaCaptioner, VideoCaptioner):
    """An image-text-to-text model on clips: as one video input, or its frames as images."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mode = VideoInput(self.settings.video_input)
        if mode == VideoInput.auto:
            has_video = getattr(self.processor, "video_processor", None) is not None
            mode = VideoInput.video if has_video else VideoInput.images
        self.video_input = mode

    def caption_videos(self, clips: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        prompt_part = {"type": "text", "text": prompt}

        def prepare(batch: list[torch.Tensor]) -> Any:
            frames = [clip.permute(0, 3, 1, 2) for clip in batch]  # THWC → TCHW, as the processors take
            if self.video_input == VideoInput.video:
                text = self._chat_text([{"role": "user", "content": [{"type": "video"}, prompt_part]}])
                return self._media_batch([text] * len(frames), videos=frames)
            # Frame counts may differ between clips, so each clip gets its own prompt.
            texts = [
                self._chat_text(
                    [{"role": "user", "content": [{"type": "image"}] * len(clip) + [prompt_part]}]
                )
                for clip in frames
            ]
            return self._media_batch(texts, images=[list(clip) for clip in frames])

        # Clips of one batch must have the same number of frames to stack into one tensor.
        def run(valid: list[torch.Tensor]) -> list[str | BackendError]:
            return self._batched(valid, prepare, group=lambda clip: clip.shape[0])

        return _skip_invalid(clips, check_clip, self.error, run)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "video_input": self.video_input.value}


def _chunks(order: list[int], size: int, keys: list[Any]) -> Iterator[list[int]]:
    """`order` cut into runs of at most `size` indices sharing one key."""
    chunk: list[int] = []
    for index in order:
        if chunk and (len(chunk) == size or keys[chunk[0]] != keys[index]):
            yield chunk
            chunk = []
        chunk.append(index)
    if chunk:
        yield chunk


def final_channel(raw: str) -> str | None:
    """The answer on a harmony transcript's final channel, or None when the model never got there."""
    if HARMONY_FINAL not in raw:
        return None
    answer = raw.rsplit(HARMONY_FINAL, 1)[1]
    for end in HARMONY_ENDS:
        answer = answer.split(end, 1)[0]
    return answer.strip()


def _skip_invalid(
    items: list[Any],
    check: Callable[[Any], str | None],
    error: Callable[[str], BackendError],
    run: Callable[[list[Any]], list[str | BackendError]],
) -> list[str | BackendError]:
    """Run the valid items; each invalid one gets its reason, in its place."""
    problems = [check(item) for item in items]
    valid_results = iter(
        run([item for item, problem in zip(items, problems, strict=True) if problem is None])
    )
    return [error(problem) if problem else next(valid_results) for problem in problems]


def _looks_like_path(model_id: str) -> bool:
    # A hub id is "name" or "org/name"; anything else with separators is meant as a directory.
    return (
        model_id.startswith(("/", ".", "~"))
        or model_id.count("/") > 1
        or os.sep != "/"
        and os.sep in model_id
    )


def _load(cls: type[TransformersBackend], model_id: str, settings: TransformersConfig) -> tuple[Any, Any]:
    def fail(reason: str) -> BackendError:
        return BackendError(cls.kind, model_id, reason)

    local = Path(model_id).expanduser()
    if not local.exists() and _looks_like_path(model_id):
        raise fail(f"no such local model directory: {local}")
    hub = dict(revision=settings.revision, local_files_only=settings.local_files_only,
               trust_remote_code=settings.trust_remote_code)  # fmt: skip
    source = str(local) if local.exists() else model_id
    try:
        # The config is one small file: a wrong id, a missing file or a remote-code model fails here,
        # before any weights are fetched.
        AutoConfig.from_pretrained(source, **hub)
        device = (
            settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        dtype = settings.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        placement = {"device_map": settings.device_map} if settings.device_map else {}
        model = cls.auto_model.from_pretrained(source, dtype=getattr(torch, dtype), **placement, **hub)
        processor = cls.auto_processor.from_pretrained(source, **hub)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = f"cannot load ({type(err).__name__}): {lines[0] if lines else err}"
        if "custom code" in str(err) and not settings.trust_remote_code:
            reason += " Set transformers.trust_remote_code=true only for a repository you trust."
        raise fail(reason) from err
    if not settings.device_map:
        model = model.to(device)
    return model, processor
