"""One Chat Completions request, on plain aiohttp or on the openai SDK, with failures sorted for retrying.

A transport sends one request and either returns the reply text or raises `Retryable` (408, 429,
5xx, timeouts, connection errors, unreadable bodies: worth another try) or `Fatal` (any other 4xx, a
reply without content: the same request would fail again). A `Retryable` says what kind of failure it
was; connection failures and 5xx are the ones that say the server is down (`OUTAGE`). Retries,
backoff, the circuit breakers, the choice of replica and the concurrency cap live in `http_backend.py`,
identical for both transports; a transport talks to one replica.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

CONNECTION, SERVER, BUSY, TIMEOUT, UNREADABLE = "connection", "server", "busy", "timeout", "unreadable"
OUTAGE = frozenset({CONNECTION, SERVER})  # what the circuit breaker counts: nobody answers, or only 5xx
# What the backend sends that the SDK takes as arguments; anything else (http.extra_body) goes as extra_body.
SDK_FIELDS = frozenset({"model", "messages", "max_tokens", "temperature", "top_p", "seed", "response_format"})


class Retryable(Exception):
    def __init__(self, reason: str, kind: str, retry_after: float | None = None):
        super().__init__(reason)
        self.kind = kind
        self.retry_after = retry_after


class Fatal(Exception):
    pass


def check_status(status: int, detail: str, retry_after: str | None = None) -> None:
    if status < 400:
        return
    reason = f"HTTP {status}: {_error_message(detail)}"
    if status == 401 or status == 403:
        raise Fatal(f"{reason} (is the API key variable set?)")
    if status >= 500:
        raise Retryable(reason, SERVER, _seconds(retry_after))
    if status in (408, 429):  # request timeout, too many requests: the server is up but busy
        raise Retryable(reason, BUSY, _seconds(retry_after))
    raise Fatal(reason)  # 400 and the like: the same request would be refused again


def reply_text(body: Any) -> str:
    """The assistant's text from a completion body."""
    try:
        choice = body["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise Retryable(
            f"unreadable reply: no choices[0].message.content in {str(body)[:200]}", UNREADABLE
        ) from None
    if not content:
        finish = choice.get("finish_reason")
        # GPT-OSS reasons first: a reply cut at max_tokens before the answer has no content at all.
        why = "; the reasoning used up max_tokens" if finish == "length" else ""
        raise Fatal(f"empty content (finish_reason={finish}{why})")
    return content


def _timeout_kind(err: BaseException) -> str:
    """CONNECTION when the timeout is a connect that failed (refused, host gone), else TIMEOUT."""
    for _ in range(8):  # a cause chain: SDK error <- HTTP client error <- aiohttp error
        connect = type(err).__name__ in ("ConnectTimeout", "ConnectError")  # the SDK's httpx names
        if connect or isinstance(err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return CONNECTION
        if err.__cause__ is None:
            break
        err = err.__cause__
    return TIMEOUT


def _error_message(detail: str) -> str:
    try:
        return str(json.loads(detail)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return detail[:300]


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from inference servers, fall back to our own backoff


class AiohttpTransport:
    """One pooled `aiohttp.ClientSession` on the backend's event loop."""

    def __init__(self, base_url: str, concurrency: int, timeout_s: float, connect_timeout_s: float):
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # Pool as many connections as requests may be in flight, so none waits for a socket.
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self.connect_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def chat(self, payload: dict[str, Any], headers: dict[str, str]) -> str:
        assert self._session is not None, "open() first"
        try:
            async with self._session.post(
                f"{self.base_url}/chat/completions", json=payload, headers=headers
            ) as r:
                detail = await r.text()
                check_status(r.status, detail, r.headers.get("Retry-After"))
        except aiohttp.ConnectionTimeoutError as err:  # a host that is gone: no answer to the connect
            raise Retryable(f"connection error: {type(err).__name__}: {err}", CONNECTION) from None
        except asyncio.TimeoutError:
            raise Retryable(f"timed out after {self.timeout_s:g} s", TIMEOUT) from None
        except aiohttp.ClientError as err:
            raise Retryable(f"connection error: {type(err).__name__}: {err}", CONNECTION) from None
        try:
            body = json.loads(detail)
        except ValueError:
            raise Retryable(f"unreadable reply (not JSON): {detail[:200]!r}", UNREADABLE) from None
        return reply_text(body)

    async def models(self, headers: dict[str, str], timeout_s: float) -> list[str]:
        assert self._session is not None, "open() first"
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self.connect_timeout_s)
        async with self._session.get(f"{self.base_url}/models", headers=headers, timeout=timeout) as r:
            detail = await r.text()
            check_status(r.status, detail)
        return [entry["id"] for entry in json.loads(detail)["data"]]


class OpenAITransport:
    """The openai SDK's AsyncOpenAI client on its aiohttp transport; the SDK's own retries are off."""

    def __init__(
        self, base_url: str, timeout_s: float, connect_timeout_s: float, api_key: Callable[[], str | None]
    ):
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._api_key = api_key
        self._client: Any = None

    async def open(self) -> None:
        import openai

        async def key() -> str:
            # Read at request time; "EMPTY" is the placeholder vLLM documents for servers without keys.
            return self._api_key() or "EMPTY"

        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=key,
            timeout=openai.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def chat(self, payload: dict[str, Any], headers: dict[str, str]) -> str:
        import openai

        try:
            known = {key: value for key, value in payload.items() if key in SDK_FIELDS}
            more = {key: value for key, value in payload.items() if key not in SDK_FIELDS}
            completion = await self._client.chat.completions.create(**known, extra_body=more or None)
        except openai.APITimeoutError as err:
            # The SDK reports a refused connection as a connect timeout; name the cause to tell them apart.
            name = type(err.__cause__).__name__ if err.__cause__ else "timeout"
            raise Retryable(
                f"timed out or unreachable ({name}; timeout {self.timeout_s:g} s)", _timeout_kind(err)
            ) from None
        except openai.APIConnectionError as err:
            raise Retryable(f"connection error: {err}", CONNECTION) from None
        except openai.APIStatusError as err:
            check_status(err.status_code, err.response.text, err.response.headers.get("Retry-After"))
            raise
        except (openai.APIResponseValidationError, ValueError) as err:
            raise Retryable(f"unreadable reply: {err}", UNREADABLE) from None
        return reply_text(completion.model_dump())

    async def models(self, headers: dict[str, str], timeout_s: float) -> list[str]:
        import openai

        try:
            page = await self._client.models.list(
                timeout=openai.Timeout(timeout_s, connect=self.connect_timeout_s)
            )
        except openai.APIStatusError as err:
            check_status(err.status_code, err.response.text)
            raise
        return [model.id for model in page.data]
