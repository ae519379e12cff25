"""The OpenAI-compatible HTTP backend against a real local server that misbehaves on request."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from action100m.backends import BackendError, GenerationConfig, HTTPConfig, build_backend
from action100m.backends.http_backend import HTTPChatBackend
from action100m.testing.fake_server import EMPTY, HANG, MALFORMED, FakeChatServer

TRANSPORTS = ["aiohttp", "openai"]
CONVERSATION = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


def backend(server: FakeChatServer, transport: str = "aiohttp", **http) -> HTTPChatBackend:
    settings = dict(base_url=server.base_url, transport=transport, backoff_base_s=0.01, backoff_max_s=0.05)
    return HTTPChatBackend(
        server.model, HTTPConfig(**{**settings, **http}), GenerationConfig(max_new_tokens=7)
    )


def ask(*texts: str) -> list[list[dict]]:
    return [[{"role": "user", "content": text}] for text in texts]


def decode_image(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_answers_come_back_in_input_order(transport):
    with FakeChatServer(latency_s=0.05) as server, backend(server, transport, concurrency=3) as llm:
        texts = llm.complete(ask(*(f"question {i}" for i in range(10))))
        assert texts == [f"question {i}" for i in range(10)]
        body = server.received[0].body
    assert body["max_tokens"] == 7 and body["temperature"] == 0.0 and "response_format" not in body
    assert body["messages"][0]["content"].startswith("question")


def test_sampling_settings_are_sent():
    generation = GenerationConfig(max_new_tokens=9, temperature=0.7, top_p=0.9, do_sample=True, seed=3)
    with FakeChatServer() as server:
        with HTTPChatBackend(server.model, HTTPConfig(base_url=server.base_url), generation) as llm:
            llm.complete([CONVERSATION])
        body = server.received[0].body
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (9, 0.7, 0.9, 3)
    assert body["messages"] == CONVERSATION


def test_json_schema_goes_as_response_format():
    schema = {
        "title": "Node annotation",
        "type": "object",
        "properties": {"brief": {"type": "string"}},
        "required": ["brief"],
        "additionalProperties": False,
    }

    def reply(messages, response_format):
        assert response_format is not None
        return json.dumps({"brief": "stir the mixture"})

    with FakeChatServer(reply=reply) as server, backend(server) as llm:
        assert llm.enforces_json_schema
        [text] = llm.complete([CONVERSATION], json_schema=schema)
        sent = server.received[0].body["response_format"]
    assert json.loads(text) == {"brief": "stir the mixture"}
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "Node_annotation", "schema": schema, "strict": True},
    }


def test_images_and_clips_go_as_data_urls(images, clips):
    with FakeChatServer() as server, backend(server) as captioner:
        assert captioner.caption_images(images[:2], "describe this image") == ["describe this image"] * 2
        assert captioner.caption_videos(clips[:1], "describe the clip") == ["describe the clip"]
        image_request, _, clip_request = (
            request.body["messages"][0]["content"] for request in server.received
        )
    assert [part["type"] for part in image_request] == ["image_url", "text"]
    assert decode_image(image_request[0]["image_url"]["url"]).size == (images[0].shape[1], images[0].shape[0])
    # A clip's frames go as images, in order, then the prompt.
    assert [part["type"] for part in clip_request] == ["image_url"] * len(clips[0]) + ["text"]


def test_png_frames_are_lossless_and_a_clip_can_go_as_one_video(clips):
    with FakeChatServer() as server, backend(server, image_format="png", video_input="video") as captioner:
        captioner.caption_images([clips[0][0]], "describe")
        captioner.caption_videos(clips[:1], "describe")
        png_request, video_request = (request.body["messages"][0]["content"] for request in server.received)
    pixels = torch.from_numpy(np.array(decode_image(png_request[0]["image_url"]["url"])))
    assert torch.equal(pixels, clips[0][0])
    header, frames = video_request[0]["video_url"]["url"].split(",", 1)
    assert video_request[0]["type"] == "video_url" and header == "data:video/jpeg;base64"
    assert len(frames.split(",")) == len(clips[0])  # vLLM's video/jpeg: one base64 JPEG per frame


def test_bad_media_fail_alone(images):
    with FakeChatServer() as server, backend(server) as captioner:
        texts = captioner.caption_images([images[0], images[1].float(), images[2]], "describe")
        clip_texts = captioner.caption_videos([images[0]], "describe")  # an image is not a clip
    assert isinstance(texts[0], str) and isinstance(texts[2], str) and server.requests_total == 2
    assert isinstance(texts[1], BackendError) and "uint8" in str(texts[1])
    assert isinstance(clip_texts[0], BackendError) and "TxHxWx3" in str(clip_texts[0])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_500_and_429_are_retried_until_success(transport):
    with FakeChatServer(script=[500, 429, 503]) as server, backend(server, transport, max_retries=3) as llm:
        assert llm.complete([CONVERSATION]) == ["hello"]
        assert server.requests_total == 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_hung_request_times_out_is_retried_then_fails_alone(transport):
    def script(index, messages):
        return HANG if messages[-1]["content"] == "slow" else "ok"

    with FakeChatServer(script=script, hang_s=5) as server:
        with backend(server, transport, timeout_s=0.3, max_retries=1) as llm:
            texts = llm.complete(ask("fast", "slow", "fast too"))
        slow_requests = [r for r in server.received if r.body["messages"][-1]["content"] == "slow"]
    assert texts[0] == "fast" and texts[2] == "fast too"
    assert (
        isinstance(texts[1], BackendError) and "timed out" in str(texts[1]) and "2 attempts" in str(texts[1])
    )
    assert len(slow_requests) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_malformed_body_is_retried_then_reported(transport):
    with FakeChatServer(script=[MALFORMED] * 3) as server, backend(server, transport, max_retries=2) as llm:
        [text] = llm.complete([CONVERSATION])
        assert server.requests_total == 3
    assert isinstance(text, BackendError) and "unreadable reply" in str(text)


def test_empty_content_and_client_errors_are_not_retried():
    with FakeChatServer(script=[EMPTY, 400]) as server, backend(server, max_retries=3) as llm:
        empty, bad_request = llm.complete(ask("first")) + llm.complete(ask("second"))
        assert server.requests_total == 2
    assert "empty content" in str(empty) and "HTTP 400" in str(bad_request)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_is_down_gives_an_error_per_item(transport, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HTTPConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        transport=transport,
        max_retries=2,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        breaker_failures=0,
    )
    with caplog.at_level(logging.WARNING), HTTPChatBackend("some-model", config) as llm:
        texts = llm.complete(ask("a", "b", "c"))
    assert "unreachable at start-up" in caplog.text
    assert len(texts) == 3 and all(isinstance(text, BackendError) for text in texts)
    assert all("some-model" in str(text) and "3 attempts" in str(text) for text in texts)
    assert all(text.retryable and text.server == config.base_url for text in texts)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_concurrency_cap_is_reached_and_never_exceeded(transport):
    with FakeChatServer(latency_s=0.1) as server, backend(server, transport, concurrency=4) as llm:
        assert len(llm.complete(ask(*"abcdefghijkl"))) == 12
        assert server.max_in_flight == 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_api_key_from_the_named_variable_is_sent_but_never_shown(transport, monkeypatch):
    monkeypatch.setenv("ACTION100M_TEST_KEY", "sk-secret-123")
    with FakeChatServer() as server:
        llm = backend(server, transport, api_key_env="ACTION100M_TEST_KEY")
        llm.complete([CONVERSATION])
        shown = json.dumps(llm.describe()) + repr(llm) + repr(llm.http) + str(vars(llm))
        llm.close()
        headers = server.received[-1].headers
    assert headers["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in shown and "ACTION100M_TEST_KEY" in shown


def test_no_key_variable_no_authorization_header(monkeypatch):
    monkeypatch.delenv("ACTION100M_UNSET_KEY", raising=False)
    with FakeChatServer() as server, backend(server, api_key_env="ACTION100M_UNSET_KEY") as llm:
        llm.complete([CONVERSATION])
        assert "Authorization" not in server.received[-1].headers


def test_a_model_the_server_does_not_serve_fails_at_start_up():
    with FakeChatServer(model="served-model") as server:
        config = HTTPConfig(base_url=server.base_url)
        with pytest.raises(BackendError, match="model 'wrong/model-id'.*not served.*served-model"):
            HTTPChatBackend("wrong/model-id", config)


def test_credentials_in_the_url_stay_out_of_describe():
    config = HTTPConfig(base_url="http://user:hunter2@127.0.0.1:9/v1", check_model=False)
    with HTTPChatBackend("m", config) as llm:
        assert "hunter2" not in json.dumps(llm.describe()) + repr(llm)


def test_async_api_from_a_running_loop():
    with FakeChatServer() as server, backend(server) as llm:

        async def main():
            return await asyncio.gather(llm.acomplete(ask("one")), llm.acomplete(ask("two")))

        assert asyncio.run(main()) == [["one"], ["two"]]


def test_build_backend_serves_every_interface_over_http(clips):
    with FakeChatServer(model="facebook/Perception-LM-3B") as server:
        cfg = {
            "interface": "video_captioner",
            "kind": "openai",
            "model": "facebook/Perception-LM-3B",
            "http": {"base_url": server.base_url},
        }
        with build_backend(cfg) as captioner:
            assert captioner.caption_videos(clips[:1], "what happens") == ["what happens"]
            assert captioner.describe()["backend"] == "openai"
