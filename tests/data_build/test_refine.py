"""The refine stage against a real local Chat Completions server that answers well or misbehaves on cue.

Every selected node must end annotated or in the failures with its reason; nothing is lost.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from action100m.backends import LLM, BackendError, GenerationConfig, HTTPConfig
from action100m.backends.http_backend import HTTPChatBackend
from action100m.config import CONFIG_DIR
from action100m.dataset.schema import NOT_APPLICABLE, Node, VideoRecord, read_official_json
from action100m.errors import ConfigError
from action100m.refine.answer import AnswerRules
from action100m.refine.prompt import PROMPTS, PromptConfig
from action100m.testing.fake_server import EMPTY, HANG, LENGTH, MALFORMED, OK, FakeChatServer, Reply
from data_build.refine import (
    KeepAnswers,
    Mode,
    RefineConfig,
    direct_annotation,
    refine_config,
    refine_records,
)

TEXTS = PROMPTS["v1"]
TREE = [  # name, parent, start, end: B2 lasts 6 s; A1, A2 last 4 s but are leaves
    ("root", None, 0, 16),
    ("A", "root", 0, 8),
    ("B", "root", 8, 16),
    ("A1", "A", 0, 4),
    ("A2", "A", 4, 8),
    ("B1", "B", 8, 10),
    ("B2", "B", 10, 16),
    ("B2a", "B2", 10, 13),
    ("B2b", "B2", 13, 16),
]
SELECTED = ["root", "A", "B", "B2"]


def small_record(uid: str = "v1", caption_words: int = 0) -> VideoRecord:
    """A hand-made Tree-of-Captions: 9 nodes, of which 4 are non-leaf and at least 4 s long."""
    parents = {parent for _, parent, _, _ in TREE}
    padding = " word" * caption_words
    nodes = []
    for name, parent, start, end in TREE:
        level = 0 if parent is None else 1 + (parent != "root") + (parent == "B2")
        leaf = name not in parents
        nodes.append(
            Node(
                f"{uid}-{name}",
                f"{uid}-{parent}" if parent else None,
                level,
                float(start),
                float(end),
                frame_caption=f"Frame of {name}.{padding}" if leaf else None,
                segment_caption=f"Caption of {name}.{padding}",
                action_label=f"build part {name}",
            )
        )
    metadata = {
        "title": f"Video {uid}",
        "description": "How to build a model.",
        "duration": 16.0,
        "transcript": [{"time": "1.0", "text": "first part"}, {"time": "8.0", "text": "now the second part"}],
    }
    return VideoRecord(uid, metadata, nodes).validate()


def node_named(record: VideoRecord, name: str) -> Node:
    return next(node for node in record.nodes if node.node_id == f"{record.video_uid}-{name}")


# -- a scripted model behind the fake server ------------------------------------------------------


def request(messages: list[dict]) -> tuple[str, str, str]:
    """(video, node name, kind) of a request: kind is draft, refine or repair."""
    user = messages[1]["content"]
    video = re.search(r"title: Video (\w+)", user).group(1)
    start, end = (float(x) for x in re.search(r"<segment>\n# ([\d.]+)s → ([\d.]+)s", user).groups())
    name = next(n for n, _, s, e in TREE if (s, e) == (start, end))
    kind = (
        "draft" if len(messages) == 2 else "refine" if messages[-1]["content"] == TEXTS.refine else "repair"
    )
    return video, name, kind


def answer(name: str, round_number: int, action: bool = True) -> dict:
    brief, detailed, actor = (f"build part {name}", f"Build part {name} with both hands.", "a person")
    return {
        "summary": {
            "brief": f"A person builds part {name}.",
            "detailed": f"A person builds part {name} on a table (round {round_number}).",
        },
        "action": {"brief": brief, "detailed": detailed, "actor": actor}
        if action
        else {"brief": NOT_APPLICABLE, "detailed": NOT_APPLICABLE, "actor": NOT_APPLICABLE},
    }


def round_of(messages: list[dict]) -> int:
    """The round a request belongs to: one more than the round of the answer it refines."""
    shown = [m["content"] for m in messages[2:] if m["role"] == "assistant"]
    found = re.search(r"\(round (\d+)\)", shown[0]) if shown else None
    return int(found.group(1)) + 1 if found and messages[3]["content"] == TEXTS.refine else 1


def good_reply(messages: list[dict], response_format: dict | None = None) -> str:
    """A model that always answers well: draft round 1, then round k refines round k - 1."""
    _, name, _ = request(messages)
    return json.dumps(answer(name, round_of(messages)))


def script_for(bad: dict[str, object], kinds: tuple[str, ...] = ("draft", "refine", "repair")):
    """Misbehave for the nodes named in `bad` (name → behaviour) on requests of the given kinds."""

    def script(index: int, messages: list[dict]) -> object:
        _, name, kind = request(messages)
        return bad.get(name, OK) if kind in kinds else OK

    return script


def http_llm(server: FakeChatServer, **http) -> HTTPChatBackend:
    # No circuit breaker: these tests script failures one by one (tests/backends has the breaker's).
    settings = dict(
        base_url=server.base_url, backoff_base_s=0.01, backoff_max_s=0.02, max_retries=0, breaker_failures=0
    )
    return HTTPChatBackend(
        server.model, HTTPConfig(**{**settings, **http}), GenerationConfig(max_new_tokens=64)
    )


def run(records, server=None, cfg=None, work_dir=None, **http):
    with http_llm(server, **http) as llm:
        return refine_records(records, cfg or RefineConfig(), llm, work_dir)


# -- all good -------------------------------------------------------------------------------------


def test_every_selected_node_gets_three_rounds_and_the_last_answer(tmp_path):
    records = [small_record("v1"), small_record("v2")]
    with FakeChatServer(reply=good_reply) as server:
        result = run(records, server, work_dir=tmp_path)
        sent = [request(r.body["messages"]) for r in server.received]
        formats = {json.dumps(r.body["response_format"]) for r in server.received}
    assert (result.selected, result.annotated, result.llm_calls, result.from_cache) == (8, 8, 24, 0)
    assert result.failures == [] and result.incomplete == []
    assert sorted(kind for _, _, kind in sent) == ["draft"] * 8 + ["refine"] * 16
    assert len(formats) == 1 and '"strict": true' in formats.pop()  # vLLM's structured output
    for record in records:
        for name in SELECTED:
            node = node_named(record, name)
            assert node.annotation.to_dict() == answer(name, 3)  # the last round wins
            info = node.provenance["refine"]
            assert [r["status"] for r in info["rounds"]] == ["valid"] * 3 and info["final_round"] == 3
            assert [r["answer"] for r in info["rounds"]] == [answer(name, k) for k in (1, 2, 3)]
            assert info["complete"] and info["prompt_version"] == "v1" and info["model"] == "fake-model"
            assert info["server"] == server.base_url  # which server answered, without credentials
        assert all(node_named(record, name).annotation is None for name in ("A1", "B1", "B2a"))
        assert record.provenance.models["refine"] == "fake-model" and record.provenance.refine_rounds == 3
    assert len(list(tmp_path.glob("refine/*/v1/*.json"))) == 4


def test_every_replica_gets_its_concurrency_of_nodes_in_flight():
    """`http.concurrency` is per replica: the nodes in flight were twice one replica's, so three
    replicas of concurrency 2 never had more than 4 requests between them."""
    records = [small_record(f"v{i}") for i in range(4)]
    most, done = [0], threading.Event()
    with (
        FakeChatServer(reply=good_reply, latency_s=0.2) as a,
        FakeChatServer(reply=good_reply, latency_s=0.2) as b,
        FakeChatServer(reply=good_reply, latency_s=0.2) as c,
    ):

        def watch() -> None:  # the requests in flight at all three at once
            while not done.wait(0.005):
                most[0] = max(most[0], a.in_flight + b.in_flight + c.in_flight)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with http_llm(a, base_urls=[a.base_url, b.base_url, c.base_url], concurrency=2) as llm:
                result = refine_records(records, RefineConfig(rounds=1), llm)
        finally:
            done.set()
            watcher.join()
    assert result.annotated == 16 and most[0] == 6


def test_refine_rounds_show_the_previous_answer_with_the_same_context():
    record = small_record()
    with FakeChatServer(reply=good_reply) as server:
        run([record], server, RefineConfig(rounds=2))
        by_kind = {request(r.body["messages"])[1:]: r.body["messages"] for r in server.received}
    draft, refine = by_kind[("B", "draft")], by_kind[("B", "refine")]
    assert refine[:2] == draft and len(refine) == 4
    assert json.loads(refine[2]["content"]) == answer("B", 1) and refine[3]["content"] == TEXTS.refine


def test_not_applicable_actions_and_hashed_round_answers():
    def reply(messages, response_format=None):
        _, name, _ = request(messages)
        return json.dumps(answer(name, round_of(messages), action=name != "B"))

    record = small_record()
    with FakeChatServer(reply=reply) as server:
        result = run([record], server, RefineConfig(keep_round_answers=KeepAnswers.hash))
    assert result.annotated == 4
    assert not node_named(record, "B").annotation.has_action and node_named(record, "A").annotation.has_action
    rounds = node_named(record, "B").provenance["refine"]["rounds"]
    assert all("answer" not in r and len(r["answer_sha256"]) == 64 for r in rounds)


def test_one_rounds_means_a_draft_only():
    record = small_record()
    with FakeChatServer(reply=good_reply) as server:
        result = run([record], server, RefineConfig(rounds=1))
    assert result.llm_calls == 4 and node_named(record, "A").annotation.to_dict() == answer("A", 1)


# -- bad replies ----------------------------------------------------------------------------------

REFUSAL = "I'm sorry, I can't help with that."
SPANISH = json.dumps(
    {
        "summary": {
            "brief": "Una persona construye la pieza.",
            "detailed": "La persona construye la pieza con las manos.",
        },
        "action": {
            "brief": "construir la pieza",
            "detailed": "Construye la pieza con las dos manos.",
            "actor": "una persona",
        },
    }
)
CHINESE = json.dumps(
    {
        "summary": {"brief": "一个人在搭建模型。", "detailed": "一个人用双手在桌子上搭建模型的部件。"},
        "action": {"brief": "搭建模型", "detailed": "用双手搭建模型。", "actor": "一个人"},
    }
)
WRONG_SHAPE = json.dumps({"summary": "A person builds.", "action": "build"})
CUT_OFF = '{"summary": {"brief": "A person builds part B.", "detailed": "A per'


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (Reply(REFUSAL), "no JSON object in the reply (it starts: \"I'm sorry"),
        (Reply(CUT_OFF), "no JSON object in the reply"),
        (Reply(WRONG_SHAPE), "'summary' must be an object"),
        (Reply(SPANISH), "does not look like English"),
        (Reply(CHINESE), "non-Latin script"),
        (Reply("```json\n{}\n```"), "'summary' must be an object"),
    ],
)
def test_unusable_drafts_are_repaired_then_recorded_with_the_raw_reply(behaviour, reason):
    record = small_record()
    with FakeChatServer(reply=good_reply, script=script_for({"B": behaviour})) as server:
        result = run([record], server)
        repairs = [
            r.body["messages"] for r in server.received if request(r.body["messages"])[1:] == ("B", "repair")
        ]
    assert result.annotated == 3 and node_named(record, "B").annotation is None
    [failure] = result.failures
    assert (failure.video_uid, failure.node_id, failure.stage) == ("v1", "v1-B", "refine")
    assert failure.reason.startswith("round 1: ") and reason in failure.reason and not failure.retryable
    assert failure.raw_reply == behaviour.text
    # Two repairs, each showing the model its reply and what was wrong; then the draft round fails.
    assert len(repairs) == 2 and result.llm_calls == 3 * 3 + 3
    assert repairs[0][2] == {"role": "assistant", "content": behaviour.text}
    assert (
        repairs[0][3]["content"].startswith("Your reply could not be used: ")
        and reason in repairs[0][3]["content"]
    )
    info = node_named(record, "B").provenance["refine"]
    assert info["rounds"] == [
        {"round": 1, "status": "invalid", "attempts": 3, "errors": [failure.reason[9:]] * 3}
    ]
    assert info["final_round"] is None and info["complete"]


def test_a_repaired_reply_is_accepted():
    def script(index, messages):
        _, name, kind = request(messages)
        return Reply(SPANISH) if (name, kind) == ("B", "draft") else OK

    record = small_record()
    with FakeChatServer(reply=good_reply, script=script) as server:
        result = run([record], server)
    assert result.annotated == 4 and result.failures == []
    first = node_named(record, "B").provenance["refine"]["rounds"][0]
    assert first["attempts"] == 2 and "does not look like English" in first["errors"][0]


def test_a_failed_refine_round_leaves_the_previous_valid_answer():
    record = small_record()
    with FakeChatServer(
        reply=good_reply, script=script_for({"A": Reply(CUT_OFF)}, ("refine", "repair"))
    ) as server:
        result = run([record], server)
    assert result.annotated == 4 and result.failures == [] and result.incomplete == []
    info = node_named(record, "A").provenance["refine"]
    assert [r["status"] for r in info["rounds"]] == ["valid", "invalid", "invalid"] and info[
        "final_round"
    ] == 1
    assert node_named(record, "A").annotation.to_dict() == answer("A", 1)


@pytest.mark.parametrize(
    ("behaviour", "reason", "http"),
    [
        (500, "HTTP 500: scripted status 500 (gave up after 2 attempts)", {"max_retries": 1}),
        (HANG, "timed out after 0.3 s", {"timeout_s": 0.3}),
        (MALFORMED, "unreadable reply (not JSON)", {}),
    ],
)
def test_backend_failures_are_recorded_as_retryable(behaviour, reason, http):
    record = small_record()
    with FakeChatServer(reply=good_reply, script=script_for({"B2": behaviour}), hang_s=5) as server:
        result = run([record], server, **http)
    assert result.annotated == 3 and node_named(record, "B2").annotation is None
    [failure] = result.failures
    assert failure.node_id == "v1-B2" and failure.retryable and failure.raw_reply is None
    assert failure.reason.startswith("round 1: backend: ") and reason in failure.reason
    assert not node_named(record, "B2").provenance["refine"]["complete"]


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (400, "HTTP 400: scripted status 400"),
        (EMPTY, "empty content (finish_reason=stop)"),
        (LENGTH, "empty content (finish_reason=length; the reasoning used up max_tokens)"),
    ],
)
def test_a_refused_or_empty_reply_is_a_recorded_failure_that_no_rerun_repeats(behaviour, reason, tmp_path):
    with FakeChatServer(reply=good_reply, script=script_for({"B2": behaviour})) as server:
        result = run([small_record()], server, work_dir=tmp_path)
        b2_requests = [r for r in server.received if request(r.body["messages"])[1] == "B2"]
    [failure] = result.failures
    assert failure.node_id == "v1-B2" and not failure.retryable
    assert failure.reason == f"round 1: backend: {reason}" and len(b2_requests) == 1  # no repair asked
    with FakeChatServer(reply=good_reply) as server:  # the rerun: B2 is final, nothing is sent for it
        again = run([small_record()], server, work_dir=tmp_path)
        assert server.requests_total == 0 and again.from_cache == 4
    assert [f.reason for f in again.failures] == [failure.reason]


def test_a_backend_failure_after_a_valid_round_keeps_the_answer_as_incomplete():
    record = small_record()
    with FakeChatServer(reply=good_reply, script=script_for({"root": 503}, ("refine",))) as server:
        result = run([record], server)
    assert result.annotated == 4 and result.failures == []
    [incomplete] = result.incomplete
    assert incomplete.node_id == "v1-root" and incomplete.retryable and "HTTP 503" in incomplete.reason
    assert node_named(record, "root").annotation.to_dict() == answer("root", 1)


# -- resuming -------------------------------------------------------------------------------------


def test_a_rerun_sends_only_what_is_left(tmp_path):
    records = [small_record("v1"), small_record("v2")]
    # The server "dies" after 10 requests: everything after that fails.
    with FakeChatServer(reply=good_reply, script=lambda i, m: OK if i < 10 else 500) as server:
        first = run(records, server, work_dir=tmp_path, concurrency=3)
    assert len(first.failures) + len(first.incomplete) > 0 and first.llm_calls > 10
    done = {p.stem: json.loads(p.read_text())["state"] for p in tmp_path.glob("refine/*/*/*.json")}
    left = {
        node: 0 if s["final"] else 3 - sum(r["status"] != "backend_error" for r in s["rounds"])
        for node, s in done.items()
    }
    finished = sum(s["final"] for s in done.values())

    records = [small_record("v1"), small_record("v2")]
    with FakeChatServer(reply=good_reply) as server:
        second = run(records, server, work_dir=tmp_path)
        sent = [request(r.body["messages"]) for r in server.received]
    never_started = 8 - len(done)
    assert second.llm_calls == len(sent) == sum(left.values()) + 3 * never_started
    assert second.from_cache == finished and second.annotated == 8 and second.failures == []
    for video, name, kind in sent:  # no finished node is sent again, no finished round redone
        assert left.get(f"{video}-{name}", 3) > 0
        assert kind == "refine" or left.get(f"{video}-{name}", 3) == 3
    for record in records:
        for name in SELECTED:
            assert node_named(record, name).annotation.to_dict() == answer(name, 3)

    with FakeChatServer(reply=good_reply) as server:  # a third run sends nothing at all
        third = run([small_record("v1"), small_record("v2")], server, work_dir=tmp_path)
        assert server.requests_total == 0 and third.from_cache == 8 and third.annotated == 8


CHILD = """
import sys
from pathlib import Path
from action100m.backends import GenerationConfig, HTTPConfig
from action100m.backends.http_backend import HTTPChatBackend
from data_build.refine import RefineConfig, refine_records
from tests.data_build.test_refine import small_record
url, model, work_dir = sys.argv[1:]
http = HTTPConfig(base_url=url, concurrency=2, max_retries=0)
with HTTPChatBackend(model, http, GenerationConfig(max_new_tokens=64)) as llm:  # as http_llm's
    refine_records([small_record("v1"), small_record("v2")], RefineConfig(), llm, Path(work_dir))
"""


def test_a_killed_run_resumes_without_redoing_finished_rounds(tmp_path):
    """A run killed with SIGKILL mid-way (its requests hang after the 8th): the rerun sends the rest only."""
    repo = Path(__file__).resolve().parents[2]
    script = lambda index, messages: OK if index < 8 else HANG  # noqa: E731
    with FakeChatServer(reply=good_reply, script=script, hang_s=60) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, server.model, str(tmp_path)], cwd=repo
        )
        try:
            # 8 answered rounds, each written before its node's next request; then 2 hung requests.
            while server.requests_total < 10 and child.poll() is None:
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait()
    assert server.requests_total == 10
    records = [small_record("v1"), small_record("v2")]
    with FakeChatServer(reply=good_reply) as server:
        result = run(records, server, work_dir=tmp_path)
    assert result.llm_calls == 24 - 8 and result.annotated == 8
    for record in records:
        for name in SELECTED:
            assert node_named(record, name).annotation.to_dict() == answer(name, 3)


def test_changed_inputs_or_settings_are_not_served_from_the_cache(tmp_path):
    with FakeChatServer(reply=good_reply) as server:
        run([small_record()], server, RefineConfig(rounds=1), tmp_path)
        changed = small_record()
        node_named(changed, "A1").frame_caption = "A different frame caption."
        again = run([changed], server, RefineConfig(rounds=1), tmp_path)
        assert (again.from_cache, again.llm_calls) == (2, 2)  # A1 shows in the subtrees of A and the root
        other = run([small_record()], server, RefineConfig(rounds=1, max_repairs=1), tmp_path)
        assert other.from_cache == 0 and other.config_hash != again.config_hash


# -- without an async API: one batch for all nodes of a round -------------------------------------


class ScriptedLLM(LLM):
    """An in-process LLM without `acomplete`: it records the size of every batch."""

    kind = "scripted"
    model_id = "scripted-model"
    generation = GenerationConfig()

    def __init__(self, reply):
        self.reply, self.batches = reply, []

    def complete(self, conversations, json_schema=None):
        self.batches.append(len(conversations))
        return [self.reply(conversation) for conversation in conversations]


def test_a_batch_backend_gets_all_nodes_of_a_round_in_one_call():
    records = [small_record("v1"), small_record("v2"), small_record("v3")]
    llm = ScriptedLLM(good_reply)
    result = refine_records(records, RefineConfig(), llm)
    assert llm.batches == [12, 12, 12] and result.annotated == 12


def test_a_batch_backend_with_repairs_and_errors():
    def reply(messages):
        _, name, kind = request(messages)
        if name == "A":
            return BackendError("scripted", "scripted-model", "out of memory")
        return Reply(REFUSAL).text if (name, kind) == ("B", "draft") else good_reply(messages)

    records = [small_record("v1"), small_record("v2")]
    llm = ScriptedLLM(reply)
    result = refine_records(records, RefineConfig(rounds=2), llm)
    # Round 1 of all 8, then B's repairs go with the others' round 2, then round 2 of the repaired B.
    assert llm.batches == [8, 6, 2] and result.annotated == 6
    assert [f.node_id for f in result.failures] == ["v1-A", "v2-A"] and "out of memory" in result.failures[
        0
    ].reason


# -- direct mode, config --------------------------------------------------------------------------


def test_direct_mode_uses_the_nodes_own_captions():
    record = small_record()
    node_named(record, "B2").segment_caption = None
    node_named(record, "A").action_label = ""
    result = refine_records([record], RefineConfig(mode=Mode.direct))
    assert (result.selected, result.annotated, result.llm_calls) == (4, 3, 0)
    [failure] = result.failures
    assert failure.node_id == "v1-B2" and "no segment caption" in failure.reason
    annotation = node_named(record, "B").annotation
    assert (annotation.summary_brief, annotation.summary_detailed) == ("Caption of B.", "Caption of B.")
    assert (annotation.action_brief, annotation.actor) == ("build part B", NOT_APPLICABLE)
    assert not node_named(record, "A").annotation.has_action
    assert node_named(record, "B").provenance == {"refine": {"mode": "direct"}}


def test_direct_annotation_of_a_long_caption():
    node = Node("n", None, 0, 0.0, 5.0, segment_caption="He cuts. Then he peels. Done", action_label="cut")
    assert direct_annotation(node).summary_brief == "He cuts."


def test_config_checks():
    with pytest.raises(ConfigError, match="needs an LLM backend"):
        refine_records([small_record()], RefineConfig())
    with pytest.raises(ConfigError, match="refine.rounds: out of range"):
        refine_config({"rounds": 0})
    with pytest.raises(ConfigError, match="refine config: .*not_a_key"):
        refine_config({"not_a_key": 1})
    with pytest.raises(ConfigError, match="unknown; known: v1"):
        refine_records(
            [small_record()], RefineConfig(prompt=PromptConfig(version="v0")), ScriptedLLM(good_reply)
        )
    cfg = refine_config({"rounds": 2, "rules": {"english_only": False}, "prompt": {"token_budget": 999}})
    assert (cfg.rounds, cfg.rules, cfg.prompt.token_budget) == (2, AnswerRules(english_only=False), 999)


# -- the official sample --------------------------------------------------------------------------


def test_official_sample_end_to_end(official_sample, tmp_path):
    """A model that answers each node with the release's own annotation: every node gets it back."""
    [record] = read_official_json(official_sample)
    expected = {(n.start, n.end): n.annotation.to_dict() for n in record.nodes if n.annotation}
    for node in record.nodes:
        node.annotation = None

    def reply(messages, response_format=None):
        span = re.search(r"<segment>\n# ([\d.]+)s → ([\d.]+)s", messages[1]["content"]).groups()
        matches = [a for (s, e), a in expected.items() if (f"{s:.2f}", f"{e:.2f}") == span]
        return f"Reasoning: the captions agree.\n```json\n{json.dumps(matches[0])}\n```"

    with FakeChatServer(reply=reply) as server:
        result = run([record], server, work_dir=tmp_path, concurrency=16)
    assert (result.selected, result.annotated, result.llm_calls) == (262, 262, 786) and not result.failures
    assert {(n.start, n.end): n.annotation.to_dict() for n in record.nodes if n.annotation} == expected


@pytest.mark.parametrize("preset", ["paper", "direct", "demo"])
def test_presets_load_into_the_typed_config(preset):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = refine_config(compose(config_name=None, overrides=[f"+refine={preset}"]).refine)
    assert cfg.min_duration == 4.0
    if preset == "paper":
        assert (cfg.mode, cfg.rounds, cfg.keep_round_answers) == (Mode.llm, 3, KeepAnswers.hash)
        assert (cfg.llm.model, cfg.llm.kind.value, cfg.llm.http.concurrency) == (
            "openai/gpt-oss-120b",
            "openai",
            4,  # per replica: 64 build tasks x 4 = serve_vllm.sh's --max-num-seqs 256
        )
        assert cfg.prompt.tokenizer == "openai/gpt-oss-120b" and cfg.structured_output
    else:
        assert cfg.mode == Mode.direct and cfg.llm is None


def test_the_api_key_reaches_neither_cache_nor_provenance_and_serving_settings_keep_the_hash(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("REFINE_TEST_KEY", "sk-secret-123")
    record = small_record()
    with FakeChatServer(reply=good_reply) as server:
        first = run([record], server, RefineConfig(rounds=1), tmp_path, api_key_env="REFINE_TEST_KEY")
        assert server.received[0].headers["Authorization"] == "Bearer sk-secret-123"
        # Another cap, timeout and key variable serve the same answers: the cache is reused.
        second = run([small_record()], server, RefineConfig(rounds=1), tmp_path, concurrency=7, timeout_s=9)
    assert second.config_hash == first.config_hash and second.from_cache == 4
    stored = "".join(path.read_text() for path in tmp_path.rglob("*.json")) + record.to_json()
    assert "sk-secret" not in stored and "REFINE_TEST_KEY" not in stored


def test_failures_serialise_for_the_failure_log():
    record = small_record()
    with FakeChatServer(reply=good_reply, script=script_for({"B": Reply(REFUSAL)})) as server:
        [failure] = run([record], server, RefineConfig(max_repairs=0)).failures
    assert failure.to_dict() == {
        "video_uid": "v1",
        "node_id": "v1-B",
        "stage": "refine",
        "raw_reply": REFUSAL,
        "retryable": False,
        "reason": "round 1: no JSON object in the reply (it starts: \"I'm sorry, I can't help with that.\")",
    }
    assert str(failure).startswith("video v1: node v1-B: refine: round 1: no JSON object")
