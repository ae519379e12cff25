"""The three interfaces served by local transformers models: any HF hub id or local directory.

Loading goes through the Auto classes (causal LM for the LLM, image-text-to-text for the captioners)
with `trust_remote_code` off unless the config turns it on. Prompts are rendered with the
processor's or tokenizer's own chat template, padded on the left and generated in batches of
`batch_size`. A batch that fails (an odd input, out of memory) is retried one item at a time, so only
the items that fail on their own come back as `BackendError`s.

Structured output: `TransformersLLM.complete(..., json_schema=...)` decodes under the schema with
xgrammar (the grammar engine vLLM uses by default): the schema is compiled once per tokenizer into a
token-level grammar, and each row of a batch keeps its own matcher, which masks the tokens that would
leave the grammar before every step (greedy and sampling alike). A reply that reaches
`max_new_tokens` before the JSON is complete comes back as a `BackendError` saying so; so does one
the tokenizer cannot spell (a word-level toy vocabulary has no `{`). Harmony-format models (GPT-OSS)
reason on the analysis channel before answering, which a grammar from the first token would forbid:
they stay unconstrained (`structured_output: "off (harmony)"` in `describe()`), and the caller
validates their final answer as it does an HTTP server's without schema enforcement.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import torch
import transformers
import xgrammar
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    LogitsProcessor,
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
# Named in describe(), so that refine's cache key changes with the engine that enforced the schema.
STRUCTURED_OUTPUT_ENGINE = f"xgrammar-{version('xgrammar')}"
# One fixed layout (no free whitespace): the same tokens decide the same bytes, and a random model
# cannot spend its budget on blanks between the keys.
JSON_SEPARATORS = (", ", ": ")


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
            **super().describe(),
            **settings,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device),
            "model_class": type(self.model).__name__,
            "transformers_version": transformers.__version__,
        }

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
        processors = self._logits_processors()
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs, pad_token_id=self.tokenizer.pad_token_id)
        new_tokens = output[:, prompt_length:]
        if self._harmony:
            return [self._final_answer(text) for text in self.tokenizer.batch_decode(new_tokens)]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        results = [self._non_empty(text.strip()) for text in texts]
        for processor in processors:
            if isinstance(processor, SchemaProcessor):
                problems = processor.finish(new_tokens)
                results = [self.error(p) if p else r for r, p in zip(results, problems, strict=True)]
        return results

    def _logits_processors(self) -> list[Any]:
        """Processors that steer decoding; none by default (the LLM's schema grammar when asked)."""
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
    """A causal LM and its tokenizer; `json_schema` is enforced by xgrammar (harmony models: validate)."""

    auto_model = AutoModelForCausalLM
    auto_processor = AutoTokenizer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enforces_json_schema = not self._harmony
        self._compiler: xgrammar.GrammarCompiler | None = None
        self._grammars: dict[str, xgrammar.CompiledGrammar] = {}
        self._grammar: xgrammar.CompiledGrammar | None = None  # the schema of the `complete` call running

    def complete(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None = None
    ) -> list[str | BackendError]:
        texts = [self._chat_text(conversation) for conversation in conversations]
        # Similar lengths in one batch waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

        def prepare(batch: list[str]) -> Any:
            return self.tokenizer(batch, padding=True, return_tensors="pt", add_special_tokens=False)

        if json_schema is not None and self.enforces_json_schema:
            self._grammar = self._compile(json_schema)
        try:
            return self._batched(texts, prepare, order)
        finally:
            self._grammar = None

    def describe(self) -> dict[str, Any]:
        engine = STRUCTURED_OUTPUT_ENGINE if self.enforces_json_schema else "off (harmony)"
        return {**super().describe(), "structured_output": engine}

    def _compile(self, schema: dict[str, Any]) -> xgrammar.CompiledGrammar:
        """The schema's grammar over this tokenizer, compiled on first use (milliseconds for ours)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            if self._compiler is None:
                eos = self.model.generation_config.eos_token_id
                stop = [eos] if isinstance(eos, int) else list(eos or [self.tokenizer.eos_token_id])
                # The output rows, not len(tokenizer): checkpoints often pad the embedding matrix.
                rows = self.model.get_output_embeddings().weight.shape[0]
                info = xgrammar.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=rows, stop_token_ids=stop
                )
                self._compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)
            ebnf = bounded_grammar(schema, self.generation.max_new_tokens)
            self._grammars[key] = (
                self._compiler.compile_grammar(ebnf)
                if ebnf is not None
                else self._compiler.compile_json_schema(
                    schema, any_whitespace=False, separators=JSON_SEPARATORS, strict_mode=True
                )
            )
        return self._grammars[key]

    def _logits_processors(self) -> list[Any]:
        return [SchemaProcessor(self._grammar)] if self._grammar is not None else []


class SchemaProcessor(LogitsProcessor):
    """Masks one `generate` call's logits to a compiled grammar: one xgrammar matcher per batch row.

    Left padding leaves every row's reply starting at the same step, so the first call sees no
    generated token and each later call sees exactly one new token per row.
    """

    def __init__(self, grammar: xgrammar.CompiledGrammar) -> None:
        self.grammar = grammar
        self.matchers: list[xgrammar.GrammarMatcher] = []
        self.bitmask: torch.Tensor | None = None
        self.stuck: list[str | None] = []  # why a row left the grammar; it is unconstrained from then on

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.matchers:
            rows = input_ids.shape[0]
            self.matchers = [xgrammar.GrammarMatcher(self.grammar) for _ in range(rows)]
            self.stuck = [None] * rows
            self.bitmask = xgrammar.allocate_token_bitmask(rows, self.grammar.tokenizer_info.vocab_size)
        else:
            self._accept(input_ids[:, -1].tolist())
        active = [row for row, matcher in enumerate(self.matchers) if self._constrained(row, matcher)]
        if not active:
            return scores
        assert self.bitmask is not None
        for row in active:
            self.matchers[row].fill_next_token_bitmask(self.bitmask, row)
        # The grammar's own mask, as 0 (allowed) or -inf, applied on top of the other processors'.
        mask = torch.zeros(scores.shape, dtype=torch.float32)
        xgrammar.apply_token_bitmask_inplace(mask, self.bitmask)
        mask = mask.to(scores.device)
        masked = scores + mask.to(scores.dtype)
        for row in active:
            if torch.isinf(mask[row]).all():
                self.stuck[row] = "structured output: the tokenizer cannot spell the JSON schema here"
                masked[row] = scores[row]
            elif torch.isinf(masked[row]).all():
                # An earlier processor ruled out every token the grammar allows: typically the
                # end-of-sequence a tiny model suppresses, once the JSON is complete. The grammar wins.
                masked[row] = mask[row].to(scores.dtype)
        return masked

    def finish(self, new_tokens: torch.Tensor) -> list[str | None]:
        """After `generate`: per row, why its reply is not a complete match (None when it is)."""
        if not self.matchers:
            return [None] * new_tokens.shape[0]
        if new_tokens.shape[1]:
            self._accept(new_tokens[:, -1].tolist())  # the last token never reached __call__
        budget = new_tokens.shape[1]
        return [
            self.stuck[row]
            or (
                None
                if matcher.is_terminated() or matcher.is_completed()
                else f"structured output: max_new_tokens ({budget}) ran out inside the JSON; raise it"
            )
            for row, matcher in enumerate(self.matchers)
        ]

    def _constrained(self, row: int, matcher: xgrammar.GrammarMatcher) -> bool:
        return self.stuck[row] is None and not matcher.is_terminated()

    def _accept(self, tokens: list[int]) -> None:
        for row, (token, matcher) in enumerate(zip(tokens, self.matchers, strict=True)):
            if self._constrained(row, matcher) and not matcher.accept_token(token):
                self.stuck[row] = f"structured output: token {token} was generated outside the grammar"


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
        has_video = getattr(self.processor, "video_processor", None) is not None
        if mode == VideoInput.auto:
            mode = VideoInput.video if has_video else VideoInput.images
        elif mode == VideoInput.video and not has_video:
            # Its processor would drop the clip without a word, and the model answer the text alone.
            raise self.error(
                f"video_input=video: {type(self.processor).__name__} has no video processor; "
                "set video_input to images or auto"
            )
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


def bounded_grammar(schema: dict[str, Any], max_new_tokens: int) -> str | None:
    """An EBNF grammar for `schema` whose strings are bounded so that any reply fits `max_new_tokens`.

    A grammar alone lets a model stay inside a string until the budget is spent (a random model
    always does, a real one when it loops), and a cut reply is lost. Every token writes at least one
    character, so the budget left after the shortest reply is shared out among the strings without a
    `maxLength` (ASCII text; multi-byte characters take more tokens per character and can still run
    out, which `SchemaProcessor.finish` reports). Written here rather than through xgrammar's schema
    converter, whose bounded strings (0.2.9) admit raw control characters and no escapes: JSON
    forbids the one and needs the other. Only for objects of required strings (the refine answer);
    None for any other schema, or when there is no room: then the schema's own grammar, unbounded.
    """
    strings: list[tuple[str, int, int | None]] = []  # (rule, minLength, maxLength)

    def walk(node: dict[str, Any]) -> tuple[str, int]:
        """The grammar expression for `node` and the fewest characters it takes."""
        kind = node.get("type")
        if kind == "string":
            rule = f"string_{len(strings)}"
            strings.append((rule, node.get("minLength", 0), node.get("maxLength")))
            return rule, 2 + node.get("minLength", 0)
        properties = node.get("properties", {})
        if kind != "object" or not properties or set(node.get("required", ())) != set(properties):
            raise TypeError(kind)
        parts, size = [], 2 + len(JSON_SEPARATORS[0]) * (len(properties) - 1)
        for key, value in properties.items():
            expression, shortest = walk(value)
            parts.append(f"{json.dumps(json.dumps(key))} {json.dumps(JSON_SEPARATORS[1])} {expression}")
            size += len(json.dumps(key)) + len(JSON_SEPARATORS[1]) + shortest
        return f'"{{" {f" {json.dumps(JSON_SEPARATORS[0])} ".join(parts)} "}}"', size

    try:
        root, shortest = walk(schema)
    except TypeError:
        return None
    unbounded = sum(1 for _, _, most in strings if most is None)
    share = (max_new_tokens - 1 - shortest) // max(1, unbounded)  # 1: the end-of-sequence token
    if share < 1:
        return None
    # A character of a JSON string: anything but a quote, a backslash or a control character, or an
    # escape (one character, as maxLength counts them).
    lines = [f"root ::= {root}", r'char ::= [^\x00-\x1f"\\] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})']
    for rule, least, most in strings:
        most = least + share if most is None else most
        lines.append(f'{rule} ::= "\\"" char{{{least},{most}}} "\\""')
    return "\n".join(lines) + "\n"


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
    hub = dict(
        revision=settings.revision,
        local_files_only=settings.local_files_only,
        trust_remote_code=settings.trust_remote_code,
    )
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
