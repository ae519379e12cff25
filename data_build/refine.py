"""Stage 3: LLM aggregation with Self-Refine — the Tree-of-Captions of each node becomes its annotation.

Every non-leaf node lasting ≥ `min_duration` gets one conversation: our instructions and the answer's
JSON schema, the video's metadata, the global context and the node's subtree (action100m/refine/prompt).
Round 1 drafts; each further round shows the model its last valid answer and asks it to verify and
revise. An unusable reply is answered with a repair message, up to `max_repairs` times per round;
a round that still fails leaves the previous valid answer standing; a node whose draft never becomes
valid gets no annotation and a failure record holding the raw reply.

Each node runs as its own task, so nodes never wait for each other at round boundaries. A backend
with an async `acomplete` (the HTTP backend) gets one request per call, up to `in_flight` nodes at
once; a local backend gets the requests of all waiting nodes as one batch. A node's state is written
to the cache after every round (atomically), keyed by video, node and config hash, so a killed run
resumes where each node stopped. A retryable backend failure (its server down, overloaded or too
slow, after the backend's own retries and circuit breaker) stops the node without marking it final:
this run reports it, a rerun continues it. A reply the server refuses (HTTP 400: e.g. a prompt over
the model's length) or leaves empty (the reasoning used up max_tokens) would come back the same on
every rerun: it ends the round as an unusable reply does, recorded.

`mode: direct` needs no LLM: a node's own action label and segment caption become its annotation
(the paper's direct pseudo-label baseline).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from action100m.backends import LLM, BackendConfig, BackendError, Message
from action100m.backends.config import output_settings, serving
from action100m.dataset.schema import (
    NOT_APPLICABLE,
    VIDEO_UID_PATTERN,
    Annotation,
    Node,
    Provenance,
    VideoRecord,
    validate_video_uid,
)
from action100m.errors import ConfigError, StageError
from action100m.refine.answer import ANNOTATION_SCHEMA, AnswerError, AnswerRules, parse_answer
from action100m.refine.prompt import (
    Prompt,
    PromptBuilder,
    PromptConfig,
    PromptError,
    prompt_texts,
    refine_messages,
    repair_messages,
)
from action100m.refine.tokens import TokenCounter
from action100m.utils.atomic import write_json_atomic

log = logging.getLogger(__name__)
STAGE = "refine"
RAW_REPLY_CHARS = 20_000  # a failure keeps this much of the unusable reply
DURATION_SLACK = 1e-4  # spans are float32 seconds in the release: a 4 s node may measure 3.99999


class Mode(str, Enum):
    llm = "llm"
    direct = "direct"


class KeepAnswers(str, Enum):
    full = "full"  # every round's answer in the node's provenance
    hash = "hash"  # its SHA-256 only (the cache keeps the full answers either way)


@dataclass
class RefineConfig:
    mode: Mode = Mode.llm
    min_duration: float = 4.0  # seconds; only non-leaf nodes at least this long are refined
    rounds: int = 3  # 1 draft + (rounds - 1) Self-Refine rounds
    max_repairs: int = 2  # repair messages per round after an unusable reply
    keep_round_answers: KeepAnswers = KeepAnswers.full
    structured_output: bool = True  # send the JSON schema: vLLM enforces it, a local model decodes under it
    in_flight: int = serving(
        0
    )  # nodes refined at once; 0: twice the HTTP concurrency x replicas, or all nodes
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rules: AnswerRules = field(default_factory=AnswerRules)
    llm: BackendConfig | None = None  # the model, for the builder to build; None in direct mode


class RefineFailure(StageError):
    """A refine failure of one node; `raw_reply` is the last unusable reply, when there was one.
    `retryable`: a backend failure that a rerun retries (an answer the model got wrong is final);
    `server`: where its request went."""

    def __init__(
        self,
        video_uid: str,
        node_id: str,
        reason: str,
        raw_reply: str | None = None,
        retryable: bool = False,
        server: str | None = None,
    ):
        super().__init__(video_uid, STAGE, reason, node_id)
        self.raw_reply = raw_reply
        self.retryable = retryable
        self.server = server

    def to_dict(self) -> dict[str, Any]:
        return {
            "video_uid": self.video_uid,
            "node_id": self.node_id,
            "stage": self.stage,
            "reason": self.reason,
            "raw_reply": self.raw_reply,
            "retryable": self.retryable,
        }


@dataclass
class RefineResult:
    selected: int = 0  # nodes the rule selected
    annotated: int = 0  # of which now carry an annotation
    from_cache: int = 0  # finished in an earlier run: nothing sent for them
    llm_calls: int = 0  # requests sent in this run
    config_hash: str = ""
    failures: list[RefineFailure] = field(default_factory=list)  # selected nodes left without annotation
    incomplete: list[RefineFailure] = field(default_factory=list)  # annotated, but rounds cut short


def refine_config(cfg: RefineConfig | DictConfig | dict[str, Any]) -> RefineConfig:
    """A typed, checked `RefineConfig` from YAML/dict config (e.g. the builder's `refine:` node)."""
    if not isinstance(cfg, RefineConfig):
        try:
            cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RefineConfig), cfg))  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            raise ConfigError(f"refine config: {' '.join(str(err).split())}") from err
    checks = {
        "rounds": cfg.rounds >= 1,
        "max_repairs": cfg.max_repairs >= 0,
        "in_flight": cfg.in_flight >= 0,
        "min_duration": cfg.min_duration >= 0,
        "prompt.token_budget": cfg.prompt.token_budget > 0,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"refine.{key}: out of range")
    return cfg


def select_nodes(
    record: VideoRecord, min_duration: float, children: dict[str, list[Node]] | None = None
) -> list[Node]:
    """The nodes refined: every non-leaf node lasting at least `min_duration` seconds."""
    children = record.children() if children is None else children
    return [
        node
        for node in record.nodes
        if node.node_id in children and node.duration >= min_duration - DURATION_SLACK
    ]


def refine_records(
    records: list[VideoRecord], cfg: RefineConfig, llm: LLM | None = None, work_dir: Path | None = None
) -> RefineResult:
    """Annotate the selected nodes of `records` in place (annotation and provenance["refine"]).

    With `work_dir`, node results are cached under work_dir/refine/<config hash>/ and a rerun
    sends nothing for finished nodes. Every selected node ends annotated or in `result.failures`.
    """
    cfg = refine_config(cfg)
    if Mode(cfg.mode) == Mode.direct:
        return _direct(records, cfg)
    if llm is None:
        raise ConfigError("refine.mode=llm needs an LLM backend")
    count = TokenCounter.load(cfg.prompt.tokenizer, llm)
    digest = config_hash(cfg, llm, count)
    cache = NodeCache(Path(work_dir) / "refine" / digest) if work_dir is not None else None
    run = _Run(cfg, llm, PromptBuilder(cfg.prompt, count), cache, digest)
    asyncio.run(run.all(records))
    for record in records:
        provenance = record.provenance or Provenance()
        provenance.models["refine"] = llm.model_id
        provenance.prompt_versions["refine"] = cfg.prompt.version
        provenance.refine_rounds = cfg.rounds
        provenance.extra["refine_config_hash"] = digest
        record.provenance = provenance
    return run.result


def config_hash(cfg: RefineConfig, llm: LLM, count: TokenCounter) -> str:
    """What decides a node's answer: rounds, repairs, prompt (version, wording, budget, token
    counting), rules, and the model (backend, id, decoding); not where or how fast it is served
    (`output_settings`, the rule of the build's stage hashes too)."""
    prompt = {**asdict(cfg.prompt), "tokenizer": count.name}
    payload = {
        "rounds": cfg.rounds,
        "max_repairs": cfg.max_repairs,
        "structured_output": cfg.structured_output,
        "prompt": prompt,
        "prompt_texts": asdict(prompt_texts(cfg.prompt.version)),
        "rules": asdict(cfg.rules),
        "schema": ANNOTATION_SCHEMA,
        "llm": output_settings(llm.describe()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- the direct pseudo-label baseline -------------------------------------------------------------


def direct_annotation(node: Node) -> Annotation | None:
    """The node's own captions as its annotation; None without a segment caption."""
    caption = (node.segment_caption or "").strip()
    if not caption:
        return None
    label = (node.action_label or "").strip() or NOT_APPLICABLE
    first_sentence = caption.split(". ", 1)[0].rstrip(".") + "."
    # The captioner names no actor: "N/A" rather than a guess.
    return Annotation(first_sentence, caption, label, label, NOT_APPLICABLE)


def _direct(records: list[VideoRecord], cfg: RefineConfig) -> RefineResult:
    result = RefineResult(config_hash="direct")
    for record in records:
        for node in select_nodes(record, cfg.min_duration):
            result.selected += 1
            node.annotation = direct_annotation(node)
            node.provenance = {**(node.provenance or {}), STAGE: {"mode": Mode.direct.value}}
            if node.annotation is None:
                result.failures.append(
                    RefineFailure(record.video_uid, node.node_id, "direct: no segment caption")
                )
            else:
                result.annotated += 1
        provenance = record.provenance or Provenance()
        provenance.models["refine"] = "direct"
        record.provenance = provenance
    return result


# -- node state and its cache ---------------------------------------------------------------------


@dataclass
class NodeState:
    """One node's progress: the rounds so far and the last valid answer; `final` once nothing is left
    to do (all rounds ran, or the draft failed)."""

    prompt_sha256: str
    rounds: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_round: int | None = None
    final: bool = False

    def resumable(self) -> NodeState:
        """The state to continue from: a round cut short by the backend is run again."""
        if self.rounds and self.rounds[-1]["status"] == "backend_error":
            self.rounds.pop()
        return self


class NodeCache:
    """One JSON file per node: <root>/<video_uid>/<node key>.json, written atomically."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, video_uid: str, node_id: str) -> Path:
        # Ids become file names: an id that is not plainly safe is replaced by its hash.
        safe = (
            node_id if VIDEO_UID_PATTERN.fullmatch(node_id) else hashlib.sha256(node_id.encode()).hexdigest()
        )
        return self.root / validate_video_uid(video_uid) / f"{safe}.json"

    def load(self, video_uid: str, node_id: str, prompt_sha256: str) -> NodeState | None:
        """The cached state, unless absent, unreadable or made from another prompt (inputs changed)."""
        path = self.path(video_uid, node_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = NodeState(**data["state"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("refine cache %s unreadable (%s): the node is refined again", path, err)
            return None
        return state if state.prompt_sha256 == prompt_sha256 else None

    def save(self, video_uid: str, node_id: str, state: NodeState) -> None:
        entry = {"video_uid": video_uid, "node_id": node_id, "state": asdict(state)}
        write_json_atomic(self.path(video_uid, node_id), entry, indent=None)


def reopen_nodes(work_dir: Path, digest: str, failures: list[RefineFailure]) -> None:
    """Mark the last round of each failed node as cut short by its backend, so that a rerun sends it
    again (the failure-rate guard found the server, not the node, at fault)."""
    cache = NodeCache(Path(work_dir) / "refine" / digest)
    for failure in failures:
        path = cache.path(failure.video_uid, failure.node_id or "")
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        state = entry["state"]
        if state["rounds"]:
            state["rounds"][-1]["status"] = "backend_error"
        state["final"] = False
        write_json_atomic(path, entry, indent=None)


# -- the run ----------------------------------------------------------------------------------------


_Call = Callable[[list[Message]], Awaitable[str | BackendError]]


class _Batcher:
    """Serves a backend without an async API: the requests of all node tasks go as one `complete`
    batch, sent when every active task is waiting for a reply (so no request is left behind)."""

    def __init__(self, llm: LLM, schema: dict[str, Any] | None):
        self.llm, self.schema = llm, schema
        self.active = 0
        self.pending: list[tuple[list[Message], asyncio.Future]] = []
        self.wake = asyncio.Event()

    @contextlib.contextmanager
    def node(self) -> Iterator[None]:
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self.wake.set()

    async def __call__(self, conversation: list[Message]) -> str | BackendError:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((conversation, future))
        self.wake.set()
        return await future

    async def serve(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not self.pending or len(self.pending) < self.active:
                continue
            batch, self.pending = self.pending, []
            try:
                replies = await asyncio.to_thread(self.llm.complete, [c for c, _ in batch], self.schema)
            except Exception as err:  # noqa: BLE001 - a backend bug: every waiting node raises it
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), reply in zip(batch, replies, strict=True):
                future.set_result(reply)


class _Run:
    def __init__(
        self, cfg: RefineConfig, llm: LLM, prompts: PromptBuilder, cache: NodeCache | None, digest: str
    ):
        self.cfg, self.llm, self.prompts, self.cache = cfg, llm, prompts, cache
        self.schema = ANNOTATION_SCHEMA if cfg.structured_output else None
        self.result = RefineResult(config_hash=digest)

    async def all(self, records: list[VideoRecord]) -> None:
        batcher = None
        if inspect.iscoroutinefunction(getattr(self.llm, "acomplete", None)):
            call: _Call = self._request
            http = getattr(self.llm, "http", None)
            # `concurrency` is per replica: twice what every replica runs at once keeps them all busy
            replicas = len(getattr(self.llm, "replicas", None) or [None])
            limit = self.cfg.in_flight or (2 * http.concurrency * replicas if http is not None else 0)
        else:
            batcher = call = _Batcher(self.llm, self.schema)
            limit = self.cfg.in_flight
        slots = asyncio.Semaphore(limit) if limit else None
        server = asyncio.create_task(batcher.serve()) if batcher else None

        async def one(record: VideoRecord, node: Node, children: dict[str, list[Node]]) -> None:
            async with slots or contextlib.nullcontext():
                with batcher.node() if batcher else contextlib.nullcontext():
                    await self._node(record, node, children, call)

        tasks = []
        for record in records:
            children = record.children()
            for node in select_nodes(record, self.cfg.min_duration, children):
                self.result.selected += 1
                tasks.append(one(record, node, children))
        try:
            await asyncio.gather(*tasks)
        finally:
            if server:
                server.cancel()
        # Completion order varies from run to run; the report should not.
        for failures in (self.result.failures, self.result.incomplete):
            failures.sort(key=lambda failure: (failure.video_uid, failure.node_id or ""))

    async def _request(self, conversation: list[Message]) -> str | BackendError:
        [reply] = await self.llm.acomplete([conversation], self.schema)  # type: ignore[attr-defined]
        return reply

    async def _node(
        self, record: VideoRecord, node: Node, children: dict[str, list[Node]], call: _Call
    ) -> None:
        uid = record.video_uid
        try:
            prompt = self.prompts.build(record, node, children)
        except PromptError as err:
            node.annotation = None
            self.result.failures.append(RefineFailure(uid, node.node_id, str(err)))
            return
        cached = self.cache.load(uid, node.node_id, prompt.sha256) if self.cache else None
        if cached is not None and cached.final:
            self.result.from_cache += 1
            state = cached
        else:
            state = cached.resumable() if cached else NodeState(prompt.sha256)
            await self._rounds(uid, node.node_id, prompt.messages, state, call)
        self._finish(uid, node, state, prompt)

    async def _rounds(
        self, uid: str, node_id: str, first: list[Message], state: NodeState, call: _Call
    ) -> None:
        texts = self.prompts.texts
        for number in range(len(state.rounds) + 1, self.cfg.rounds + 1):
            previous = json.dumps(state.best, ensure_ascii=False)
            base = first if state.best is None else refine_messages(first, previous, texts)
            outcome = await self._round(number, base, call)
            state.rounds.append(outcome)
            if outcome["status"] == "valid":
                state.best, state.best_round = outcome["answer"], number
            # Done after the last round, or after a failed draft (later rounds would have nothing to
            # refine); never after a backend failure, which a rerun retries.
            state.final = outcome["status"] != "backend_error" and (
                number == self.cfg.rounds or state.best is None
            )
            if self.cache:
                await asyncio.to_thread(self.cache.save, uid, node_id, state)
            if outcome["status"] == "backend_error" or state.final:
                return

    async def _round(self, number: int, base: list[Message], call: _Call) -> dict[str, Any]:
        """One round: the request, then up to `max_repairs` repairs of unusable replies."""
        conversation, errors, raw = base, [], ""
        for attempt in range(1, self.cfg.max_repairs + 2):
            self.result.llm_calls += 1
            reply = await call(conversation)
            if isinstance(reply, BackendError) and reply.retryable:
                return {
                    "round": number,
                    "status": "backend_error",
                    "attempts": attempt,
                    "errors": [*errors, f"backend: {reply.reason}"],
                    "server": reply.server,
                }
            if isinstance(reply, BackendError):  # refused or empty: a repair would be refused the same way
                return {
                    "round": number,
                    "status": "invalid",
                    "attempts": attempt,
                    "errors": [*errors, f"backend: {reply.reason}"],
                    "server": reply.server,  # the failure-rate guard names it; shards leave it out
                    **({"raw_reply": raw[:RAW_REPLY_CHARS]} if raw else {}),
                }
            try:
                annotation = parse_answer(reply, self.cfg.rules)
            except AnswerError as err:
                errors.append(err.reason)
                raw = reply
                conversation = repair_messages(base, reply, err.reason, self.prompts.texts)
                continue
            return {
                "round": number,
                "status": "valid",
                "attempts": attempt,
                "answer": annotation.to_dict(),
                "errors": errors,
            }
        return {
            "round": number,
            "status": "invalid",
            "attempts": self.cfg.max_repairs + 1,
            "errors": errors,
            "raw_reply": raw[:RAW_REPLY_CHARS],
        }

    def _finish(self, uid: str, node: Node, state: NodeState, prompt: Prompt) -> None:
        """Write the outcome into the node, and count it."""
        node.annotation = Annotation.from_dict(state.best) if state.best is not None else None
        node.provenance = {**(node.provenance or {}), STAGE: self._provenance(state, prompt)}
        if node.annotation is not None:
            self.result.annotated += 1
        if node.annotation is not None and state.final:
            return
        last = state.rounds[-1]
        failure = RefineFailure(
            uid,
            node.node_id,
            f"round {last['round']}: {last['errors'][-1]}",
            last.get("raw_reply"),
            retryable=last["status"] == "backend_error",
            server=last.get("server"),
        )
        (self.result.failures if node.annotation is None else self.result.incomplete).append(failure)

    def _provenance(self, state: NodeState, prompt: Prompt) -> dict[str, Any]:
        rounds = []
        for outcome in state.rounds:
            kept = {
                key: value for key, value in outcome.items() if key not in ("answer", "raw_reply", "server")
            }
            if "answer" in outcome:
                if KeepAnswers(self.cfg.keep_round_answers) == KeepAnswers.full:
                    kept["answer"] = outcome["answer"]
                else:
                    kept["answer_sha256"] = hashlib.sha256(json.dumps(outcome["answer"]).encode()).hexdigest()
            rounds.append(kept)
        server = getattr(self.llm, "server", None)  # an HTTP backend's address (no credentials)
        return {
            "mode": Mode.llm.value,
            "model": self.llm.model_id,
            **({"server": server} if server else {}),
            "prompt_version": self.cfg.prompt.version,
            "config_hash": self.result.config_hash,
            "rounds": rounds,
            "final_round": state.best_round,
            "complete": state.final,
            "prompt_tokens": prompt.tokens,
            "subtree_depth": prompt.subtree_depth,
            "context_depth": prompt.context_depth,
        }
