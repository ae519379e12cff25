"""All three interfaces served by an OpenAI-compatible Chat Completions server (`vllm serve`, ...).

The backend owns one event loop in a daemon thread and one pooled HTTP client on it, so connections
are reused across batch calls and the sync API works whether or not the caller runs a loop of its
own. A batch becomes one request per item, at most `concurrency` in flight; each request is retried
with exponential backoff and jitter on 408, 429, 5xx, timeouts, connection errors and unreadable
bodies, and an item that still fails comes back as a `BackendError` in its place, `retryable` (a rerun
sends it again); a reply the server refuses (another 4xx) or leaves empty is a final failure.

A circuit breaker rides out outages: after `breaker_failures` connection failures or 5xx in a row,
every request waits while the server is probed (GET /models) with backoff; each probe first reads the
servers file again, when one is configured, so a server job that came back on another node is found.
Requests go on once the server answers, or fail as retryable once it stayed down `breaker_wait_s`.

The API key is read from the environment variable named in the config at request time; it is never
stored on the backend, so it cannot reach `describe()`, `repr()`, logs or shards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import torch

from action100m.backends.base import (
    LLM,
    BackendError,
    GenerationConfig,
    ImageCaptioner,
    Message,
    VideoCaptioner,
    check_clip,
    check_image,
)
from action100m.backends.config import HTTPConfig, ImageFormat, Transport, VideoInput
from action100m.backends.http_transport import (
    OUTAGE,
    TIMEOUT,
    AiohttpTransport,
    Fatal,
    OpenAITransport,
    Retryable,
)
from action100m.backends.media import image_data_url, video_data_url

log = logging.getLogger(__name__)
T = TypeVar("T")
Item = dict[str, Any] | BackendError  # a request payload, or the error that replaces it


class _LoopThread:
    """An asyncio loop running in a daemon thread; coroutines are handed to it from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-backend-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C: do not leave the batch running behind the caller's back
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def read_servers_file(path: str | Path, key: str) -> str | None:
    """The value of `key` in a file of KEY=VALUE lines (slurm/serve_vllm.sh's servers.env); None when
    the file or the line is missing (the server job removes the file when it stops)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.strip() == key and value.strip():
            return value.strip()
    return None


class Outage(Exception):
    """The circuit breaker gave up on the server."""


class CircuitBreaker:
    """Holds every request of one backend while its server is down; lives on the backend's loop.

    `failures` counts connection failures and 5xx in a row (any other answer of the server resets it);
    at `threshold`, or when a request runs out of attempts on such a failure, the breaker opens:
    requests wait in `admit()` while `_recover()` probes the server. A probe that succeeds resets the
    count and lets them go, each with the attempts it has left (one more for a request that had run
    out: it is held once). A server still down `wait_s` after the first failure of the run is given
    up on: every request then fails at once with `Outage`."""

    def __init__(
        self,
        http: HTTPConfig,
        probe: Callable[[], Awaitable[bool]],
        reread: Callable[[], None],
        server: Callable[[], str],
    ):
        self.threshold, self.wait_s = http.breaker_failures, http.breaker_wait_s
        self.backoff_s, self.backoff_max_s = http.backoff_base_s, http.breaker_backoff_max_s
        self._probe, self._reread, self._server = probe, reread, server
        self.failures = 0
        self.gave_up: str | None = None
        self._down_since: float | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._recovery: asyncio.Task | None = None

    async def admit(self) -> None:
        await self._closed.wait()
        if self.gave_up is not None:
            raise Outage(self.gave_up)

    def answered(self) -> None:
        self.failures, self._down_since = 0, None

    def failed(self, trip: bool = False) -> bool:
        """Count an outage failure (`trip`: open even below the threshold); True when the breaker is
        open, so the request waits rather than gives up."""
        if self.threshold <= 0:
            return False
        self.failures += 1
        self._down_since = self._down_since or time.monotonic()
        if self.failures < self.threshold and not trip:
            return False
        if self._closed.is_set() and self.gave_up is None:
            self._closed.clear()
            self._recovery = asyncio.ensure_future(self._recover())
        return True

    async def _recover(self) -> None:
        log.warning(
            "%s: %d connection failures or 5xx in a row; requests wait while the server is probed "
            "(up to %g s)",
            self._server(),
            self.failures,
            self.wait_s,
        )
        delay = self.backoff_s
        while True:
            left = self.wait_s - (time.monotonic() - (self._down_since or time.monotonic()))
            if left <= 0:
                self.gave_up = (
                    f"server {self._server()} down: {self.failures} connection failures or 5xx in a row, "
                    f"not back within http.breaker_wait_s={self.wait_s:g} s"
                )
                log.error("%s", self.gave_up)
                self._closed.set()
                return
            await asyncio.sleep(min(delay, left))
            self._reread()
            if await self._probe():
                log.warning("%s: the server answers again; requests go on", self._server())
                self.answered()
                self._closed.set()
                return
            delay = min(2 * delay, self.backoff_max_s)

    def cancel(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()


class HTTPChatBackend(ImageCaptioner, VideoCaptioner, LLM):
    kind = "openai"
    enforces_json_schema = True  # sent as `response_format`; vLLM constrains decoding to the schema

    def __init__(
        self, model: str, http: HTTPConfig | None = None, generation: GenerationConfig | None = None
    ):
        self.model_id = model
        self.http = http or HTTPConfig()
        self.generation = generation or GenerationConfig()
        if self.http.concurrency < 1:
            raise self.error(f"concurrency must be ≥ 1, got {self.http.concurrency}")
        if self.http.servers_file and not self.http.servers_key:
            raise self.error(
                "http.servers_key: needed with http.servers_file (the key of its line, e.g. LLM_URL)"
            )
        self._base_url = self.http.base_url
        if self.http.servers_file:
            self._base_url = (
                read_servers_file(self.http.servers_file, self.http.servers_key) or self._base_url
            )
        self._loop = _LoopThread()
        if self.http.transport == Transport.openai:
            self._transport: Any = OpenAITransport(self._base_url, self.http.timeout_s, self._api_key)
        else:
            self._transport = AiohttpTransport(self._base_url, self.http.concurrency, self.http.timeout_s)
        self._loop.run(self._transport.open())
        self._breaker = CircuitBreaker(self.http, self._probe, self._reread_servers, lambda: self.server)
        # Closes the client and stops the thread on close(), garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._transport, self._breaker)
        self._slots = asyncio.Semaphore(self.http.concurrency)
        self._image_format = ImageFormat(self.http.image_format).value
        if self.http.check_model:
            self._check_model()

    # --- the three interfaces: sync, and async for callers that run their own loop

    def caption_images(self, images: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        return self._loop.run(self._send(self._image_items(images, prompt)))

    def caption_videos(self, clips: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        return self._loop.run(self._send(self._video_items(clips, prompt)))

    def complete(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None = None
    ) -> list[str | BackendError]:
        return self._loop.run(self._send(self._llm_items(conversations, json_schema)))

    async def acaption_images(self, images: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        return await asyncio.wrap_future(self._loop.submit(self._send(self._image_items(images, prompt))))

    async def acaption_videos(self, clips: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        return await asyncio.wrap_future(self._loop.submit(self._send(self._video_items(clips, prompt))))

    async def acomplete(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None = None
    ) -> list[str | BackendError]:
        items = self._llm_items(conversations, json_schema)
        return await asyncio.wrap_future(self._loop.submit(self._send(items)))

    def describe(self) -> dict[str, Any]:
        settings = {key: getattr(value, "value", value) for key, value in asdict(self.http).items()}
        settings["base_url"] = self.server
        return {**super().describe(), **settings}

    @property
    def server(self) -> str:
        """Where requests go now, without credentials."""
        return _without_credentials(self._base_url)

    @property
    def outage(self) -> str | None:  # type: ignore[override]
        return self._breaker.gave_up

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return f"HTTPChatBackend(model={self.model_id!r}, base_url={self.server!r})"

    # --- payloads (built in the caller's thread: image encoding must not stall the event loop)

    def _image_items(self, images: list[torch.Tensor], prompt: str) -> list[Item]:
        return [
            self.error(problem)
            if (problem := check_image(image))
            else self._payload([self._image_part(image)], prompt)
            for image in images
        ]

    def _video_items(self, clips: list[torch.Tensor], prompt: str) -> list[Item]:
        items: list[Item] = []
        for clip in clips:
            if problem := check_clip(clip):
                items.append(self.error(problem))
            elif self.http.video_input == VideoInput.video:
                part = {
                    "type": "video_url",
                    "video_url": {"url": video_data_url(clip, self.http.jpeg_quality)},
                }
                items.append(self._payload([part], prompt))
            else:
                items.append(self._payload([self._image_part(frame) for frame in clip], prompt))
        return items

    def _llm_items(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None
    ) -> list[Item]:
        extra = {} if json_schema is None else {"response_format": response_format(json_schema)}
        return [self._request_body(conversation, extra) for conversation in conversations]

    def _image_part(self, image: torch.Tensor) -> dict[str, Any]:
        url = image_data_url(image, self._image_format, self.http.jpeg_quality)
        return {"type": "image_url", "image_url": {"url": url}}

    def _payload(self, media_parts: list[dict[str, Any]], prompt: str) -> dict[str, Any]:
        content = [*media_parts, {"type": "text", "text": prompt}]
        return self._request_body([{"role": "user", "content": content}], {})

    def _request_body(self, messages: list[Message], extra: dict[str, Any]) -> dict[str, Any]:
        g = self.generation
        body: dict[str, Any] = {"model": self.model_id, "messages": messages, "max_tokens": g.max_new_tokens}
        if g.do_sample:
            body.update(temperature=g.temperature, top_p=g.top_p)
        else:
            body["temperature"] = 0.0  # greedy, as vLLM and the OpenAI API define it
        if g.seed is not None:
            body["seed"] = g.seed
        return {**body, **self.http.extra_body, **extra}

    # --- sending

    def _api_key(self) -> str | None:
        return os.environ.get(self.http.api_key_env) if self.http.api_key_env else None

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _send(self, items: list[Item]) -> list[str | BackendError]:
        headers = self._headers()
        results: list[Any] = [None] * len(items)
        queue = iter(range(len(items)))

        # `concurrency` workers share the queue rather than one task per item: a batch of thousands
        # then keeps few objects alive, which spares the process long garbage-collector pauses
        # (measured: 0.15 s stalls of every request in flight, benchmarks/http_backend.py).
        async def worker() -> None:
            for index in queue:
                results[index] = await self._one(items[index], headers)

        await asyncio.gather(*(worker() for _ in range(min(self.http.concurrency, len(items)))))
        return results

    async def _one(self, item: Item, headers: dict[str, str]) -> str | BackendError:
        if isinstance(item, BackendError):
            return item
        attempts = self.http.max_retries + 1
        attempt, extra = 0, False
        # At most attempts + 1 requests: the breaker holds a request out of attempts once; and the
        # breaker gives up `breaker_wait_s` after the outage began.
        while True:
            try:
                await self._breaker.admit()
            except Outage as err:
                return self.error(str(err), retryable=True, server=self.server)
            try:
                async with self._slots:  # held only while a request is on the wire, not while backing off
                    text = await self._transport.chat(item, headers)
            except Fatal as err:
                self._breaker.answered()
                return self.error(str(err), server=self.server)
            except Retryable as err:
                attempt += 1
                last = attempt >= attempts
                held = False
                if err.kind in OUTAGE:
                    held = self._breaker.failed(trip=last and not extra) and not (last and extra)
                    extra = extra or (held and last)
                elif err.kind != TIMEOUT:
                    self._breaker.answered()  # busy or garbled, but the server is there
                if held:
                    continue  # the breaker's probing stands in for this request's backoff
                if last:
                    return self.error(
                        f"{err} (gave up after {attempt} attempts)", retryable=True, server=self.server
                    )
                delay = self._backoff(attempt - 1, err.retry_after)
                log.debug("%s: %s; retry %d in %.2f s", self.model_id, err, attempt, delay)
                await asyncio.sleep(delay)
                continue
            self._breaker.answered()
            return text

    async def _probe(self) -> bool:
        """Whether the server answers GET /models and serves this model."""
        timeout = min(10.0, self.http.timeout_s)
        try:
            served = await asyncio.wait_for(self._transport.models(self._headers(), timeout), timeout)
        except Exception:  # noqa: BLE001 - any failure means: not back yet
            return False
        return self.model_id in served

    def _reread_servers(self) -> None:
        """Follow the servers file to where the server is now."""
        if not self.http.servers_file:
            return
        url = read_servers_file(self.http.servers_file, self.http.servers_key)
        if url and url != self._base_url:
            log.warning(
                "%s: %s names a new address for %s: %s (was %s)",
                self.model_id,
                self.http.servers_file,
                self.http.servers_key,
                _without_credentials(url),
                self.server,
            )
            self._base_url = url
            self._transport.retarget(url)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Jitter spreads out the retries of a whole batch that failed at once (a restarting server).
        delay = min(self.http.backoff_max_s, self.http.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.http.backoff_max_s))
        return delay

    def _check_model(self) -> None:
        """Fail fast on a wrong model name or key; a server not up yet only gets a warning."""
        timeout = min(10.0, self.http.timeout_s)
        try:
            served = self._loop.run(
                asyncio.wait_for(self._transport.models(self._headers(), timeout), timeout)
            )
        except Fatal as err:
            self.close()
            raise self.error(f"start-up check at {self.server}: {err}") from None
        except Exception as err:  # noqa: BLE001 - any failure to reach the server is reported per item later
            log.warning(
                "%s: %s unreachable at start-up (%s: %s); failed requests will be recorded per item",
                self.model_id,
                self.server,
                type(err).__name__,
                err,
            )
            return
        if self.model_id not in served:
            self.close()
            raise self.error(f"not served at {self.server}; it serves {served}")


def _shut_down(
    loop: _LoopThread, transport: AiohttpTransport | OpenAITransport, breaker: CircuitBreaker
) -> None:
    loop.loop.call_soon_threadsafe(breaker.cancel)
    loop.run(transport.close())
    loop.stop()


def response_format(json_schema: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions `response_format` that constrains the reply to `json_schema`."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(json_schema.get("title", "response")))[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema, "strict": True}}


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
