"""A real, scriptable OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and benchmarks.

It speaks enough of the protocol that vLLM serves (POST /v1/chat/completions, GET /v1/models) for the
HTTP backend and the openai SDK, and can misbehave on request: latency, error statuses (with a
Retry-After header if asked), hung requests, malformed bodies, bodies cut off mid-way, reset
connections, empty content, a reply cut at max_tokens while reasoning. It counts requests, the most
it ever had in flight and its requests in flight over time (`request_seconds`); `stop()` then `start()`
again (on the same port: the first start fixes it) is a server that went down and came back.
`fault_mix` scripts a seeded random mix of misbehaviours.

    with FakeChatServer(latency_s=0.25, script=[500, Status(429, retry_after_s=1), "ok"]) as server:
        ...  # point a backend at server.base_url, model server.model

Run it alone (the benchmark does, in its own process): `python -m action100m.testing.fake_server`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

OK, HANG, MALFORMED, EMPTY, LENGTH = "ok", "hang", "malformed", "empty", "length"
TRUNCATED, RESET = "truncated", "reset"


@dataclass(frozen=True)
class Reply:
    """A scripted behaviour: answer with exactly this text."""

    text: str


@dataclass(frozen=True)
class Status:
    """A scripted behaviour: an HTTP error status, with a Retry-After header (whole seconds, as HTTP
    writes it) when `retry_after_s` is given."""

    code: int
    retry_after_s: int | None = None


# "ok" | "hang" (sleep `hang_s`, longer than any client timeout) | "malformed" (a complete 200 reply
# whose JSON is cut short) | "truncated" (a valid reply, but the connection closes half-way through
# the body its Content-Length promised) | "reset" (the connection is reset, no answer at all) | "empty"
# (content null) | "length" (content null, finish_reason "length": a reasoning model's reasoning used
# up max_tokens, as vLLM answers it) | an HTTP error status such as 500 or 429 | Status(429, 1) | Reply(text)
Behaviour = str | int | Status | Reply
Script = Sequence[Behaviour] | Callable[[int, list[dict[str, Any]]], Behaviour]
ReplyFn = Callable[[list[dict[str, Any]], dict[str, Any] | None], str]


def echo(messages: list[dict[str, Any]], response_format: dict[str, Any] | None = None) -> str:
    """The text of the last message, so a test can tell which request an answer belongs to."""
    content = messages[-1].get("content") if messages else ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def fault_mix(
    rates: Mapping[Behaviour, float], seed: int = 0
) -> Callable[[int, list[dict[str, Any]]], Behaviour]:
    """A script giving request i behaviour b with probability rates[b], else "ok".

    The pick depends on the seed and the request's index only, not on the order in which concurrent
    requests arrive, so a seed names one schedule of faults."""
    total = sum(rates.values())
    if total > 1 or any(rate < 0 for rate in rates.values()):
        raise ValueError(f"fault rates must be ≥ 0 and sum to ≤ 1, got {dict(rates)}")
    behaviours, cumulative = list(rates), list(itertools.accumulate(rates.values()))

    def script(index: int, messages: list[dict[str, Any]]) -> Behaviour:
        draw = random.Random(f"{seed}:{index}").random()
        return next((b for b, edge in zip(behaviours, cumulative, strict=True) if draw < edge), OK)

    return script


@dataclass(frozen=True)
class ReceivedRequest:
    body: dict[str, Any]
    headers: dict[str, str]


class FakeChatServer:
    """The server, run on its own event loop in a daemon thread; a context manager."""

    def __init__(
        self,
        model: str = "fake-model",
        latency_s: float = 0.0,
        script: Script | None = None,
        reply: ReplyFn = echo,
        hang_s: float = 30.0,
        keep_requests: int = 1000,
        port: int = 0,
    ) -> None:
        self.model = model
        self.latency_s = latency_s
        self.script = script
        self.reply = reply
        self.hang_s = hang_s
        self.port = port
        self.requests_total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._request_seconds = 0.0  # the integral of in_flight over time, up to _counted_at
        self._counted_at = time.monotonic()
        self.received: deque[ReceivedRequest] = deque(maxlen=keep_requests)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeChatServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._start_site())
            except BaseException as err:  # noqa: B036 - handed to the starting thread, re-raised there
                failure.append(err)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-chat-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("fake chat server did not start within 30 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=256 * 1024**2)  # a 32-frame clip as PNGs is large
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # Hung handlers must end when their client gives up, so a timeout test leaves nothing behind.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _behaviour(self, index: int, messages: list[dict[str, Any]]) -> Behaviour:
        if self.script is None:
            return OK
        if callable(self.script):
            return self.script(index, messages)
        return self.script[index] if index < len(self.script) else OK

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        index = self.requests_total
        self.requests_total += 1
        self._count_in_flight(+1)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, index)
        finally:
            self._count_in_flight(-1)

    def _count_in_flight(self, change: int) -> None:
        now = time.monotonic()
        self._request_seconds += self.in_flight * (now - self._counted_at)
        self.in_flight, self._counted_at = self.in_flight + change, now

    def request_seconds(self) -> float:
        """Requests in flight integrated over time, since the server was made: its difference over a
        span of time, divided by the span, is the mean number in flight (the server's occupancy)."""
        return self._request_seconds + self.in_flight * (time.monotonic() - self._counted_at)

    async def _answer(self, request: web.Request, index: int) -> web.StreamResponse:
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "body must be JSON with a 'messages' list")
        self.received.append(ReceivedRequest(body, dict(request.headers)))
        if body.get("model") != self.model:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        behaviour = self._behaviour(index, messages)
        await asyncio.sleep(self.latency_s)
        if behaviour == HANG:
            await asyncio.sleep(self.hang_s)
            return _error(504, "hung request ended by the server")
        if isinstance(behaviour, int):
            return _error(behaviour, f"scripted status {behaviour}")
        if isinstance(behaviour, Status):
            response = _error(behaviour.code, f"scripted status {behaviour.code}")
            if behaviour.retry_after_s is not None:
                response.headers["Retry-After"] = str(behaviour.retry_after_s)
            return response
        if behaviour == RESET:
            return _reset(request)
        if behaviour == MALFORMED:
            return web.Response(
                text='{"id": "chatcmpl-x", "choices": [{"mess', content_type="application/json"
            )
        if behaviour in (EMPTY, LENGTH):
            content = None
        elif isinstance(behaviour, Reply):
            content = behaviour.text
        else:
            content = self.reply(messages, body.get("response_format"))
        completion = _completion(self.model, index, content)
        if behaviour == LENGTH:
            choice = completion["choices"][0]
            choice["finish_reason"], choice["message"]["reasoning_content"] = "length", "We need to think..."
        if behaviour == TRUNCATED:
            return await _truncated(request, completion)
        return web.json_response(completion)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "fake_error", "code": status}}, status=status
    )


def _reset(request: web.Request) -> web.Response:
    """Reset the connection: with a zero linger time, closing the socket sends RST instead of FIN."""
    transport = request.transport
    assert transport is not None, "a request being handled has its connection"
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # aiohttp takes a failed write of this response as the client having gone, quietly.
    return web.Response(status=200)


async def _truncated(request: web.Request, completion: dict[str, Any]) -> web.StreamResponse:
    """Promise the whole body in Content-Length, send half of it, then close the connection."""
    body = json.dumps(completion).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    assert request.transport is not None, "a request being handled has its connection"
    request.transport.close()  # after the buffered half is flushed
    return response


def _completion(model: str, index: int, content: str | None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Chat Completions API until interrupted.")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args()
    with FakeChatServer(model=args.model, latency_s=args.latency, port=args.port, keep_requests=0) as server:
        # The first line tells a parent process where to connect.
        print(json.dumps({"base_url": server.base_url, "model": server.model}), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
