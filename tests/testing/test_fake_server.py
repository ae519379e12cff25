"""The fake Chat Completions server speaks the protocol and misbehaves exactly as scripted."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from action100m.testing.fake_server import EMPTY, MALFORMED, FakeChatServer, Reply


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
