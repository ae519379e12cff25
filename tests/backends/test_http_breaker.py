"""What the HTTP backend retries, what it records as final, and its circuit breaker, against the fake
server on 127.0.0.1 going down, failing and coming back (at the same address or a new one)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from action100m.backends import BackendError, GenerationConfig, HTTPConfig
from action100m.backends.http_backend import HTTPChatBackend, read_servers_file
from action100m.testing.fake_server import EMPTY, LENGTH, FakeChatServer
from action100m.utils.atomic import write_text_atomic

TRANSPORTS = ["aiohttp", "openai"]
FAST = dict(backoff_base_s=0.02, backoff_max_s=0.05, breaker_backoff_max_s=0.2)


def ask(*texts: str) -> list[list[dict]]:
    return [[{"role": "user", "content": text}] for text in texts]


def backend(url: str, transport: str = "aiohttp", model: str = "fake-model", **http) -> HTTPChatBackend:
    config = HTTPConfig(base_url=url, transport=transport, **{**FAST, **http})
    return HTTPChatBackend(model, config, GenerationConfig(max_new_tokens=7))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_408_and_429_are_retried_other_client_errors_are_final(transport):
    with (
        FakeChatServer(script=[408, 429]) as server,
        backend(server.base_url, transport, max_retries=3) as llm,
    ):
        assert llm.complete(ask("busy")) == ["busy"] and server.requests_total == 3
    for status in (400, 404, 413, 422):
        with FakeChatServer(script=[status] * 5) as server:
            with backend(server.base_url, transport, max_retries=3) as llm:
                [error] = llm.complete(ask("refused"))
            assert server.requests_total == 1, status
        assert isinstance(error, BackendError) and f"HTTP {status}" in str(error) and not error.retryable


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_failures_say_whether_a_rerun_should_send_them_again(transport):
    # 2 attempts, then one more once the breaker, opened by the request out of attempts, lets it go.
    with FakeChatServer(script=[503, 503, 503, EMPTY, LENGTH]) as server:
        with backend(server.base_url, transport, max_retries=1) as llm:
            [down] = llm.complete(ask("a"))
            empty, cut = llm.complete(ask("b")) + llm.complete(ask("c"))
    assert down.retryable and down.server == server.base_url and "gave up after 3 attempts" in str(down)
    assert not empty.retryable and "finish_reason=stop" in str(empty)
    assert not cut.retryable and "the reasoning used up max_tokens" in str(cut)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_breaker_waits_for_a_server_that_moved_and_follows_the_servers_file(transport, tmp_path, caplog):
    servers = tmp_path / "servers.env"
    first = FakeChatServer().start()
    write_text_atomic(servers, f"FRAME_CAPTIONER_URL=http://elsewhere:1/v1\nLLM_URL={first.base_url}\n")
    moved = FakeChatServer()
    # The file wins over base_url; max_retries=1 alone would give up within a second.
    settings = dict(
        servers_file=str(servers),
        servers_key="LLM_URL",
        max_retries=1,
        breaker_failures=3,
        breaker_wait_s=30,
        concurrency=2,
    )
    with caplog.at_level(logging.WARNING), backend("http://127.0.0.1:1/v1", transport, **settings) as llm:
        assert llm.complete(ask("before")) == ["before"] and first.requests_total == 1
        first.stop()
        servers.unlink()  # as slurm/serve_vllm.sh does when its job ends

        def come_back() -> None:
            time.sleep(1.0)
            moved.start()
            write_text_atomic(servers, f"LLM_URL={moved.base_url}\n")

        helper = threading.Thread(target=come_back)
        helper.start()
        started = time.monotonic()
        texts = llm.complete(ask(*"abcdef"))
        waited = time.monotonic() - started
        helper.join()
        assert texts == list("abcdef") and moved.requests_total == 6
        assert llm.server == moved.base_url and llm.outage is None
    moved.stop()
    assert 1.0 <= waited < 30
    assert "requests wait while the server is probed" in caplog.text
    assert f"names a new address for LLM_URL: {moved.base_url}" in caplog.text


def test_the_breaker_waits_for_a_server_restarted_at_the_same_address():
    server = FakeChatServer().start()
    port = server.port
    with backend(server.base_url, max_retries=0, breaker_failures=2, breaker_wait_s=30) as llm:
        server.stop()
        restarted = FakeChatServer(port=port)
        helper = threading.Timer(0.8, restarted.start)
        helper.start()
        texts = llm.complete(ask("x", "y", "z"))
        helper.join()
    restarted.stop()
    assert texts == ["x", "y", "z"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_breaker_gives_up_after_its_limit_and_then_fails_at_once(transport):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with backend(
        url, transport, max_retries=0, breaker_failures=2, breaker_wait_s=0.6, check_model=False
    ) as llm:
        started = time.monotonic()
        texts = llm.complete(ask(*"abcde"))
        waited = time.monotonic() - started
        started = time.monotonic()
        [later] = llm.complete(ask("later"))
        assert time.monotonic() - started < 0.5
        outage = llm.outage
    assert 0.6 <= waited < 10
    for text in [*texts, later]:
        assert isinstance(text, BackendError) and text.retryable and text.server == url
    assert f"server {url} down" in str(later) and "breaker_wait_s=0.6" in str(later) and outage in str(later)


def test_a_server_that_lists_its_model_but_fails_every_request_is_left_in_bounded_time():
    # /v1/models answers, so each probe lets the requests go; each then ends out of attempts.
    with FakeChatServer(script=lambda index, messages: 503) as server:
        with backend(server.base_url, max_retries=2, breaker_failures=2, breaker_wait_s=600) as llm:
            started = time.monotonic()
            texts = llm.complete(ask(*"abcd"))
            assert time.monotonic() - started < 10
        assert server.requests_total <= 4 * (3 + 1)
    assert all(
        isinstance(text, BackendError) and text.retryable and "HTTP 503" in str(text) for text in texts
    )


def test_one_request_that_always_fails_does_not_hold_the_others_for_long():
    def script(index: int, messages: list[dict]) -> object:
        return 500 if messages[-1]["content"] == "poison" else "ok"

    with FakeChatServer(script=script) as server:
        with backend(
            server.base_url, max_retries=3, breaker_failures=2, breaker_wait_s=600, concurrency=1
        ) as llm:
            started = time.monotonic()
            texts = llm.complete(ask("poison", "fine", "also fine"))
            assert time.monotonic() - started < 10
    assert isinstance(texts[0], BackendError) and texts[1:] == ["fine", "also fine"]


def test_servers_file_lines(tmp_path):
    path = tmp_path / "servers.env"
    assert read_servers_file(path, "LLM_URL") == []
    path.write_text(
        "# written by slurm/serve_vllm.sh\nLLM_URL=\nLLM_URL2=http://b/v1\nLLM_URL = http://a:8002/v1\n"
    )
    assert read_servers_file(path, "LLM_URL") == ["http://a:8002/v1"]
    assert read_servers_file(path, "SEGMENT_CAPTIONER_URL") == []
    # one line per replica (serve_vllm.sh), or several on one line; each address once, in order
    path.write_text("LLM_URL=http://a:8002/v1\nLLM_URL=http://b:8102/v1, http://c:8202/v1,http://a:8002/v1\n")
    assert read_servers_file(path, "LLM_URL") == ["http://a:8002/v1", "http://b:8102/v1", "http://c:8202/v1"]
    with pytest.raises(BackendError, match="http.servers_key"):
        backend("http://127.0.0.1:1/v1", servers_file=str(path), check_model=False)
