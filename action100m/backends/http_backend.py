"""All three interfaces served by OpenAI-compatible Chat Completions servers (`vllm serve`, ...).

The backend owns one event loop in a daemon thread and, per replica of the server, one pooled HTTP
client on it, so connections are reused across batch calls and the sync API works whether or not the
caller runs a loop of its own. A batch becomes one request per item; each goes to the live replica with
the fewest requests in flight, at most `concurrency` in flight per replica. Each request is retried
with exponential backoff and jitter on 408, 429, 5xx, timeouts, connection errors and unreadable
bodies (on another replica when one has room), and an item that still fails comes back as a
`BackendError` in its place, `retryable` (a rerun sends it again), naming the replica it went to; a
reply the server refuses (another 4xx) or leaves empty is a final failure.

A circuit breaker per replica rides out outages: after `breaker_failures` connection failures or 5xx
in a row the replica is passed over while it is probed (GET /models) with backoff, and rejoins once it
answers. The servers file, when one is configured, is read again when a breaker opens and before each
probe, so replicas that came back elsewhere, or were added, are found. Only with every replica down do
requests wait; they go on once one answers, or fail as retryable once all stayed down `breaker_wait_s`.

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
from collections import deque
from collections.abc import Coroutine
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


def read_servers_file(path: str | Path, key: str) -> list[str]:
    """The addresses under `key` in a file of KEY=VALUE lines (slurm/serve_vllm.sh's servers.env): one
    line per replica, in order (a line may also list several, comma-separated), each address once; []
    when the file or the lines are missing (the server job removes the file when it stops)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    urls: list[str] = []
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.strip() == key:
            urls += [url.strip() for url in value.split(",") if url.strip()]
    return list(dict.fromkeys(urls))


class Outage(Exception):
    """The backend gave up on its servers: every replica stayed down."""


class CircuitBreaker:
    """Whether one replica takes requests.

    `failures` counts connection failures and 5xx in a row (any other answer of the replica resets
    it); at `threshold`, or when a request runs out of attempts on such a failure, the breaker opens
    and the replica takes no request until a probe finds it answering (`HTTPChatBackend._recover`)."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.failures = 0
        self.down_since: float | None = None  # the first of the failures in a row
        self.open = False

    def answered(self) -> None:
        self.failures, self.down_since = 0, None

    def failed(self, trip: bool = False) -> bool:
        """Count an outage failure (`trip`: open even below the threshold); True when the breaker is
        (now) open, so the request is held rather than given up on."""
        if self.threshold <= 0:
            return False
        self.failures += 1
        self.down_since = self.down_since or time.monotonic()
        return self.failures >= self.threshold or trip


class Replica:
    """One server of the model: its address, its client, its breaker and the requests in flight to it."""

    def __init__(self, url: str, transport: AiohttpTransport | OpenAITransport, breaker: CircuitBreaker):
        self.url = url
        self.transport = transport
        self.breaker = breaker
        self.in_flight = 0
        self.recovery: asyncio.Task | None = None  # probing it while its breaker is open

    @property
    def name(self) -> str:
        """Its address without credentials."""
        return _without_credentials(self.url)


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
        urls = list(dict.fromkeys(self.http.base_urls or [self.http.base_url]))
        if self.http.servers_file:
            urls = read_servers_file(self.http.servers_file, self.http.servers_key) or urls
        self._loop = _LoopThread()
        # Changed in place only (never rebound): the finalizer closes the replicas of the moment.
        self._replicas: list[Replica] = []
        self._retired: list[Replica] = []  # dropped from the servers file: closed at shut-down
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._replicas, self._retired)
        self._replicas += self._loop.run(self._open_replicas(urls))
        self._last = self._replicas[0]  # the replica a request was last sent to
        self._waiters: deque[asyncio.Future[None]] = deque()  # requests waiting for a slot
        self._turn = 0  # rotates the choice among replicas with as few requests in flight
        self._reading = asyncio.Lock()  # one reader of the servers file at a time
        self._gave_up: str | None = None
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
        settings["base_urls"] = self.replicas
        return {**super().describe(), **settings}

    @property
    def server(self) -> str:
        """The replica a request was last sent to (the only one, with one), without credentials."""
        return self._last.name

    @property
    def replicas(self) -> list[str]:
        """Where requests may go now, without credentials."""
        return [replica.name for replica in self._replicas]

    @property
    def outage(self) -> str | None:  # type: ignore[override]
        return self._gave_up

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

        # As many workers as there are slots, sharing the queue, rather than one task per item: a
        # batch of thousands then keeps few objects alive, which spares the process long garbage-
        # collector pauses (measured: 0.15 s stalls of every request in flight, benchmarks/http_backend.py).
        async def worker() -> None:
            for index in queue:
                results[index] = await self._one(items[index], headers)

        workers = min(self.http.concurrency * len(self._replicas), len(items))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return results

    async def _one(self, item: Item, headers: dict[str, str]) -> str | BackendError:
        if isinstance(item, BackendError):
            return item
        attempts = self.http.max_retries + 1
        attempt = 0
        held_once: set[Replica] = set()  # the breakers that held this request when out of attempts
        failed_on: Replica | None = None  # where the last attempt failed: the next goes elsewhere if it can
        # At most attempts + (replicas) requests: each breaker holds a request out of attempts once;
        # and the backend gives up `breaker_wait_s` after its last replica went down.
        while True:
            try:
                replica = await self._acquire(avoid=failed_on)
            except Outage as err:
                return self.error(str(err), retryable=True, server=(failed_on or self._last).name)
            try:  # the slot is held only while the request is on the wire, not while backing off
                text = await replica.transport.chat(item, headers)
            except Fatal as err:
                replica.breaker.answered()
                return self.error(str(err), server=replica.name)
            except Retryable as err:
                failure = err
            else:
                replica.breaker.answered()
                return text
            finally:
                self._release(replica)
            attempt += 1
            last = attempt >= attempts
            held = False
            failed_on = replica
            if failure.kind in OUTAGE:
                again = last and replica in held_once
                held = self._failed(replica, trip=last and not again) and not again
                if held and last:
                    held_once.add(replica)
            elif failure.kind != TIMEOUT:
                replica.breaker.answered()  # busy or garbled, but the server is there
            if held:
                continue  # another replica takes it now, or the probing stands in for its backoff
            if last:
                return self.error(
                    f"{failure} (gave up after {attempt} attempts)", retryable=True, server=replica.name
                )
            delay = self._backoff(attempt - 1, failure.retry_after)
            log.debug("%s: %s: %s; retry %d in %.2f s", self.model_id, replica.name, failure, attempt, delay)
            await asyncio.sleep(delay)

    # --- choosing a replica

    async def _acquire(self, avoid: Replica | None) -> Replica:
        """A slot on the live replica with the fewest requests in flight, other than `avoid` while
        another has room; waits while every replica is full or down."""
        while True:
            if self._gave_up is not None:
                raise Outage(self._gave_up)
            count = len(self._replicas)
            free = [
                (replica.in_flight, (index - self._turn) % count, replica)
                for index, replica in enumerate(self._replicas)
                if not replica.breaker.open and replica.in_flight < self.http.concurrency
            ]
            if free:
                others = [entry for entry in free if entry[2] is not avoid] or free
                replica = min(others, key=lambda entry: entry[:2])[2]
                self._turn += 1
                replica.in_flight += 1
                self._last = replica
                return replica
            timeout = None
            if all(replica.breaker.open for replica in self._replicas):
                timeout = self._outage_left()
                if timeout <= 0:
                    self._give_up()
                    continue
            await self._wait_for_change(timeout)

    def _release(self, replica: Replica) -> None:
        replica.in_flight -= 1
        self._wake()

    async def _wait_for_change(self, timeout: float | None) -> None:
        """Until a slot is released, a replica goes down or rejoins, or `timeout` passes."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # hand on the slot this request was woken for
            raise

    def _wake(self, everyone: bool = False) -> None:
        """Wake the first waiting request (a slot was released), or all (the replicas changed)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return

    # --- the circuit breakers

    def _failed(self, replica: Replica, trip: bool) -> bool:
        """Count an outage failure of `replica`; True when its breaker is open (the request is held)."""
        held = replica.breaker.failed(trip)
        if held and not replica.breaker.open:
            replica.breaker.open = True
            replica.recovery = asyncio.ensure_future(self._recover(replica))
            self._wake(everyone=True)
        return held

    async def _recover(self, replica: Replica) -> None:
        """Probe a replica whose breaker opened (GET /models, with backoff) until it answers, following
        the servers file before each probe; it rejoins once it answers, or stops being probed when the
        file no longer names it."""
        alone = all(other.breaker.open for other in self._replicas)
        log.warning(
            "%s: %d connection failures or 5xx in a row; %s",
            replica.name,
            replica.breaker.failures,
            f"requests wait while the server is probed (up to {self.http.breaker_wait_s:g} s)"
            if alone
            else "its requests go to the other replicas while it is probed",
        )
        await self._follow_servers_file()
        delay = self.http.backoff_base_s
        while replica in self._replicas:
            await asyncio.sleep(delay)
            await self._follow_servers_file()
            if replica not in self._replicas:
                return
            if await self._probe(replica):
                log.warning("%s: the server answers again; requests go on", replica.name)
                replica.breaker.answered()
                replica.breaker.open = False
                self._wake(everyone=True)
                return
            delay = min(2 * delay, self.http.breaker_backoff_max_s)

    def _outage_left(self) -> float:
        """Seconds until the backend gives up, every replica down: breaker_wait_s after the last of
        them began to fail."""
        now = time.monotonic()
        began = max(replica.breaker.down_since or now for replica in self._replicas)
        return self.http.breaker_wait_s - (now - began)

    def _give_up(self) -> None:
        failures = sum(replica.breaker.failures for replica in self._replicas)
        down = (
            f"server {self._replicas[0].name} down"
            if len(self._replicas) == 1
            else f"every server down ({', '.join(self.replicas)})"
        )
        self._gave_up = (
            f"{down}: {failures} connection failures or 5xx in a row, not back within "
            f"http.breaker_wait_s={self.http.breaker_wait_s:g} s"
        )
        log.error("%s", self._gave_up)
        for replica in self._replicas:
            if replica.recovery is not None:
                replica.recovery.cancel()
        self._wake(everyone=True)

    async def _probe(self, replica: Replica) -> bool:
        """Whether the replica answers GET /models and serves this model."""
        timeout = min(10.0, self.http.timeout_s)
        try:
            served = await asyncio.wait_for(replica.transport.models(self._headers(), timeout), timeout)
        except Exception:  # noqa: BLE001 - any failure means: not back yet
            return False
        return self.model_id in served

    async def _follow_servers_file(self) -> None:
        """Take the replicas the servers file names now: new ones join, those it no longer names are
        dropped (their requests in flight finish); a missing file (the server job stopped) changes
        nothing."""
        if not self.http.servers_file:
            return
        async with self._reading:
            urls = read_servers_file(self.http.servers_file, self.http.servers_key)
            if not urls or urls == [replica.url for replica in self._replicas]:
                return
            log.warning(
                "%s: %s names %s for %s: %s (was %s)",
                self.model_id,
                self.http.servers_file,
                "a new address" if len(urls) == 1 else "new addresses",
                self.http.servers_key,
                ", ".join(_without_credentials(url) for url in urls),
                ", ".join(self.replicas),
            )
            kept = {replica.url: replica for replica in self._replicas}
            replicas = [kept.pop(url, None) or await self._open_replica(url) for url in urls]
            for dropped in kept.values():
                if dropped.recovery is not None and dropped.recovery is not asyncio.current_task():
                    dropped.recovery.cancel()
                self._retired.append(dropped)
            self._replicas[:] = replicas
            self._wake(everyone=True)

    async def _open_replicas(self, urls: list[str]) -> list[Replica]:
        return [await self._open_replica(url) for url in urls]

    async def _open_replica(self, url: str) -> Replica:
        if self.http.transport == Transport.openai:
            transport: Any = OpenAITransport(
                url, self.http.timeout_s, self.http.connect_timeout_s, self._api_key
            )
        else:
            transport = AiohttpTransport(
                url, self.http.concurrency, self.http.timeout_s, self.http.connect_timeout_s
            )
        await transport.open()
        return Replica(url, transport, CircuitBreaker(self.http.breaker_failures))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Jitter spreads out the retries of a whole batch that failed at once (a restarting server).
        delay = min(self.http.backoff_max_s, self.http.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.http.backoff_max_s))
        return delay

    def _check_model(self) -> None:
        """Fail fast on a wrong model name or key; a replica not up yet only gets a warning."""
        timeout = min(10.0, self.http.timeout_s)
        headers = self._headers()

        async def ask_all() -> list[Any]:
            asks = (replica.transport.models(headers, timeout) for replica in self._replicas)
            return await asyncio.gather(
                *(asyncio.wait_for(ask, timeout) for ask in asks), return_exceptions=True
            )

        for replica, served in zip(self._replicas, self._loop.run(ask_all()), strict=True):
            if isinstance(served, Fatal):
                self.close()
                raise self.error(f"start-up check at {replica.name}: {served}") from None
            if isinstance(served, BaseException):  # reported per item later, if it stays so
                log.warning(
                    "%s: %s unreachable at start-up (%s: %s); failed requests will be recorded per item",
                    self.model_id,
                    replica.name,
                    type(served).__name__,
                    served,
                )
            elif self.model_id not in served:
                self.close()
                raise self.error(f"not served at {replica.name}; it serves {served}")


def _shut_down(loop: _LoopThread, replicas: list[Replica], retired: list[Replica]) -> None:
    async def close() -> None:
        for replica in [*replicas, *retired]:
            if replica.recovery is not None:
                replica.recovery.cancel()
            await replica.transport.close()

    loop.run(close())
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
