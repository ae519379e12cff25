"""The fake Chat Completions server speaks the protocol and misbehaves exactly as scripted."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from collections import Counter

import aiohttp
import openai
import pytest

from action100m.testing.fake_server import (
    EMPTY,
    MALFORMED,
    OK,
    RESET,
    TRUNCATED,
    FakeChatServer,
    Reply,
    Status,
    fault_mix,
)


def post(server: FakeChatServer, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def chat(server: FakeChatServer, text: str = "hello") -> dict:
    return {"model": server.model, "messages": [{"role": "user", "content": text}]}


def test_the_openai_sdk_understands_it():
    with FakeChatServer(model="m") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        assert [model.id for model in client.models.list().data] == ["m"]
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi there"}]
        )
        assert completion.choices[0].message.content == "hi there"  # the default reply echoes
        client.close()
    assert server.base_url.startswith("http://127.0.0.1:")


def test_scripted_behaviours_in_arrival_order():
    with FakeChatServer(script=[500, 429, MALFORMED, EMPTY, Reply("scripted")]) as server:
        statuses = [post(server, chat(server)) for _ in range(6)]
    assert [status for status, _ in statuses] == [500, 429, 200, 200, 200, 200]
    with pytest.raises(ValueError):
        json.loads(statuses[2][1])
    assert json.loads(statuses[3][1])["choices"][0]["message"]["content"] is None
    assert json.loads(statuses[4][1])["choices"][0]["message"]["content"] == "scripted"
    assert json.loads(statuses[5][1])["choices"][0]["message"]["content"] == "hello"  # past the script: ok
    assert server.requests_total == 6 and len(server.received) == 6


def test_a_script_function_picks_by_content_and_a_reply_function_answers():
    def script(index, messages):
        return 503 if "fail" in messages[-1]["content"] else "ok"

    def reply(messages, response_format):
        return json.dumps({"format": response_format["type"] if response_format else None})

    with FakeChatServer(script=script, reply=reply) as server:
        assert post(server, chat(server, "please fail"))[0] == 503
        body = {**chat(server), "response_format": {"type": "json_schema", "json_schema": {}}}
        status, text = post(server, body)
    assert status == 200
    assert json.loads(json.loads(text)["choices"][0]["message"]["content"]) == {"format": "json_schema"}


def test_unknown_model_and_bad_body_are_client_errors():
    with FakeChatServer(model="served") as server:
        assert post(server, {**chat(server), "model": "other"})[0] == 404
        assert post(server, {"model": "served"})[0] == 400


def raw_post(server: FakeChatServer, body: dict) -> http.client.HTTPResponse:
    """The response with its body unread, on a connection of its own, so a test sees how it ends."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    return connection.getresponse()


def test_a_status_can_carry_retry_after():
    with FakeChatServer(script=[Status(429, retry_after_s=2), Status(503)]) as server:
        busy, down = raw_post(server, chat(server)), raw_post(server, chat(server))
    assert (busy.status, busy.getheader("Retry-After")) == (429, "2")
    assert (down.status, down.getheader("Retry-After")) == (503, None)


def test_a_truncated_body_ends_before_its_content_length():
    with FakeChatServer(script=[TRUNCATED]) as server:
        response = raw_post(server, chat(server))
        assert response.status == 200 and int(response.getheader("Content-Length")) > 0
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
        assert 0 < len(cut.value.partial) < int(response.getheader("Content-Length"))
        assert post(server, chat(server))[0] == 200  # the server goes on serving


def test_a_reset_connection_gets_no_answer():
    with FakeChatServer(script=[RESET]) as server:
        with pytest.raises(ConnectionResetError):
            raw_post(server, chat(server))
        assert post(server, chat(server))[0] == 200


async def aiohttp_outcome(server: FakeChatServer) -> str:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(f"{server.base_url}/chat/completions", json=chat(server)) as r:
                await r.json()
                return "answered"
        except aiohttp.ClientPayloadError:
            return "payload"
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            return "connection"


def test_aiohttp_sees_a_cut_body_and_a_reset_as_client_errors():
    with FakeChatServer(script=[TRUNCATED, RESET]) as server:
        assert [asyncio.run(aiohttp_outcome(server)) for _ in range(3)] == [
            "payload",
            "connection",
            "answered",
        ]


def test_a_fault_mix_is_a_schedule_fixed_by_its_seed():
    rates = {500: 0.1, Status(429, 1): 0.1, RESET: 0.1}
    first, again, other = fault_mix(rates, seed=3), fault_mix(rates, seed=3), fault_mix(rates, seed=4)
    picks = [first(i, []) for i in range(5000)]
    assert picks == [again(i, []) for i in reversed(range(5000))][::-1]  # arrival order does not matter
    assert picks != [other(i, []) for i in range(5000)]
    counts = Counter(picks)
    assert set(counts) == {500, Status(429, 1), RESET, OK}
    assert all(400 < counts[behaviour] < 600 for behaviour in rates)
    with pytest.raises(ValueError):
        fault_mix({500: 0.7, RESET: 0.4})


def test_a_stopped_server_comes_back_on_the_same_port():
    server = FakeChatServer().start()
    port = server.port
    server.stop()
    with pytest.raises(urllib.error.URLError):
        post(server, chat(server))
    server.start()
    try:
        assert server.port == port and post(server, chat(server))[0] == 200
        assert server.requests_total == 1
    finally:
        server.stop()
