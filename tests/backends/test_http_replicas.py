"""One HTTP backend, several replicas of its server: least-in-flight balancing, the per-replica cap, a
dead replica passed over and rejoining, every replica down, and the servers file listing, moving and
adding replicas, against fake servers on 127.0.0.1 that go down and come back."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from action100m.backends import BackendError, GenerationConfig, HTTPConfig
from action100m.backends.http_backend import HTTPChatBackend
from action100m.testing.fake_server import FakeChatServer
from action100m.utils.atomic import write_text_atomic

TRANSPORTS = ["aiohttp", "openai"]
FAST = dict(backoff_base_s=0.02, backoff_max_s=0.05, breaker_backoff_max_s=0.2)


def ask(*texts: str) -> list[list[dict]]:
    return [[{"role": "user", "content": text}] for text in texts]


def backend(urls: list[str], transport: str = "aiohttp", **http) -> HTTPChatBackend:
    config = HTTPConfig(base_urls=urls, transport=transport, **{**FAST, **http})
    return HTTPChatBackend("fake-model", config, GenerationConfig(max_new_tokens=7))


@contextmanager
def servers(count: int, **settings) -> Iterator[list[FakeChatServer]]:
    with ExitStack() as stack:
        yield [stack.enter_context(FakeChatServer(**settings)) for _ in range(count)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connects are never answered, as a node that is gone: a listener that accepts
    nothing, its one-place backlog already full, so the kernel drops every further SYN."""
    with socket.socket() as listener, ExitStack() as stack:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        time.sleep(0.1)
        yield port


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_requests_go_to_the_replica_with_the_fewest_in_flight_up_to_concurrency_each(transport):
    with (
        servers(2, latency_s=0.3) as (a, b),
        backend([a.base_url, b.base_url], transport, concurrency=3) as llm,
    ):
        # four at once: two each, not three on the first
        assert llm.complete(ask(*"wxyz")) == list("wxyz")
        assert (a.requests_total, b.requests_total) == (2, 2)
        assert (a.max_in_flight, b.max_in_flight) == (2, 2)
        # a batch larger than both replicas' slots fills each to its own concurrency, never beyond
        assert llm.complete(ask(*(f"q{i}" for i in range(18)))) == [f"q{i}" for i in range(18)]
        assert (a.max_in_flight, b.max_in_flight) == (3, 3)
        # one at a time: ties rotate, so neither replica idles
        for text in "abcd":
            assert llm.complete(ask(text)) == [text]
        assert (a.requests_total, b.requests_total) == (13, 13)


def test_a_slow_replica_gets_fewer_requests_than_a_fast_one():
    with FakeChatServer(latency_s=0.4) as slow, FakeChatServer(latency_s=0.02) as fast:
        with backend([slow.base_url, fast.base_url], concurrency=2) as llm:
            texts = llm.complete(ask(*(f"q{i}" for i in range(40))))
        assert texts == [f"q{i}" for i in range(40)]
        assert slow.max_in_flight <= 2 and fast.max_in_flight == 2
        assert fast.requests_total > 4 * slow.requests_total


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_replica_killed_mid_batch_loses_nothing_and_rejoins_once_it_answers(transport, caplog):
    with servers(3, latency_s=0.2) as (a, b, c):
        port = a.port
        urls = [a.base_url, b.base_url, c.base_url]
        with (
            caplog.at_level(logging.WARNING),
            backend(
                urls, transport, concurrency=4, max_retries=2, breaker_failures=2, breaker_wait_s=30
            ) as llm,
        ):
            killer = threading.Timer(0.3, a.stop)  # while its requests are in flight
            killer.start()
            texts = llm.complete(ask(*(f"q{i}" for i in range(60))))
            killer.join()
            assert texts == [f"q{i}" for i in range(60)]  # every request answered, none failed
            assert b.requests_total + c.requests_total > 40
            assert f"{a.base_url}: " in caplog.text and "its requests go to the other replicas" in caplog.text
            assert llm.outage is None

            restarted = FakeChatServer(port=port, latency_s=0.2).start()
            try:
                wait_until(lambda: "the server answers again" in caplog.text)
                assert llm.complete(ask(*(f"r{i}" for i in range(12)))) == [f"r{i}" for i in range(12)]
                assert restarted.requests_total == 4  # a third of them, as before it died
            finally:
                restarted.stop()


def test_a_replica_whose_node_is_gone_is_passed_over_after_the_connect_timeout():
    with unanswered_port() as port, FakeChatServer() as alive:
        gone = f"http://127.0.0.1:{port}/v1"
        with backend([gone, alive.base_url], concurrency=2, connect_timeout_s=0.3, timeout_s=60) as llm:
            started = time.monotonic()
            texts = llm.complete(ask(*"abcdef"))
            took = time.monotonic() - started
        assert texts == list("abcdef") and alive.requests_total == 6
        assert took < 10  # not the 60 s of timeout_s


def test_with_every_replica_down_requests_wait_for_the_first_back():
    ports = free_port(), free_port()
    second = FakeChatServer(port=ports[1])
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    with backend(urls, max_retries=0, breaker_failures=1, breaker_wait_s=30, check_model=False) as llm:
        helper = threading.Timer(0.8, second.start)
        helper.start()
        started = time.monotonic()
        texts = llm.complete(ask(*"abcd"))
        waited = time.monotonic() - started
        helper.join()
        assert texts == list("abcd") and second.requests_total == 4 and llm.server == urls[1]
    second.stop()
    assert 0.8 <= waited < 10


def test_with_every_replica_down_past_breaker_wait_s_each_request_fails_retryable_naming_them():
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with backend(urls, max_retries=1, breaker_failures=2, breaker_wait_s=0.6, check_model=False) as llm:
        started = time.monotonic()
        texts = llm.complete(ask(*"abcde"))
        waited = time.monotonic() - started
        outage = llm.outage
    assert 0.6 <= waited < 10
    assert outage is not None and f"every server down ({urls[0]}, {urls[1]})" in outage
    for text in texts:
        assert isinstance(text, BackendError) and text.retryable and text.server in urls
        assert outage in str(text)


def test_failures_and_the_backend_name_the_replica_used():
    with FakeChatServer(script=lambda index, messages: 400) as refusing, FakeChatServer() as fine:
        with backend([refusing.base_url, fine.base_url], concurrency=1) as llm:
            [refused] = llm.complete(ask("a"))
            assert llm.server == refusing.base_url
            [answered] = llm.complete(ask("b"))
            assert llm.server == fine.base_url
    assert isinstance(refused, BackendError) and refused.server == refusing.base_url and not refused.retryable
    assert answered == "b"


def test_the_servers_file_lists_the_replicas_and_the_backend_follows_it(tmp_path, caplog):
    path = tmp_path / "servers.env"
    with servers(3, latency_s=0.05) as (a, b, c):
        write_text_atomic(
            path, f"FRAME_CAPTIONER_URL=http://x:1/v1\nLLM_URL={a.base_url}\nLLM_URL={b.base_url}\n"
        )
        settings = dict(servers_file=str(path), servers_key="LLM_URL", breaker_failures=2, breaker_wait_s=30)
        with caplog.at_level(logging.WARNING), backend(["http://127.0.0.1:1/v1"], **settings) as llm:
            assert llm.replicas == [a.base_url, b.base_url]  # the file wins over base_urls
            assert llm.complete(ask(*"abcd")) == list("abcd")
            assert (a.requests_total, b.requests_total) == (2, 2)

            # The server job lost a's node and runs c instead; a's breaker opens and the file is read.
            write_text_atomic(path, f"LLM_URL={b.base_url}\nLLM_URL={c.base_url}\n")
            a.stop()
            texts = llm.complete(ask(*(f"q{i}" for i in range(20))))
            assert texts == [f"q{i}" for i in range(20)]
            assert llm.replicas == [b.base_url, c.base_url] and c.requests_total > 0
            assert f"names new addresses for LLM_URL: {b.base_url}, {c.base_url}" in caplog.text

            # The job stopped (its file removed): the replicas stay where they were, and serve on.
            path.unlink()
            assert llm.complete(ask("e")) == ["e"] and llm.replicas == [b.base_url, c.base_url]


def test_describe_names_every_replica_without_credentials():
    urls = ["http://user:hunter2@127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    with backend(urls, check_model=False) as llm:
        described = llm.describe()
        shown = json.dumps(described) + repr(llm)
    assert "hunter2" not in shown
    assert described["base_urls"] == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    assert described["base_url"] == "http://127.0.0.1:9/v1"
