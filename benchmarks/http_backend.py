"""Can the HTTP backend keep an inference server busy? Achieved requests/s ÷ the server's capacity C / L.

The fake Chat Completions server answers every request after a fixed latency L and runs in its own
process, so client and server do not share one interpreter lock (they still share this machine's
cores, as a client and a vLLM front end on one node would). With at most C requests in flight the
server can answer C / L per second; a ratio below 1 is time the client spent being the bottleneck.
Measured per transport: the backend on plain aiohttp (default), the backend on the openai SDK's
aiohttp transport, and for reference the openai SDK on its default httpx transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import openai

from action100m.backends import GenerationConfig, HTTPConfig
from action100m.backends.http_backend import HTTPChatBackend

TRANSPORTS = ("aiohttp", "openai", "openai_httpx")


def start_server(latency: float) -> tuple[subprocess.Popen, str, str]:
    command = [sys.executable, "-m", "action100m.testing.fake_server", "--latency", str(latency)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    address = json.loads(server.stdout.readline())  # the server's first line says where it listens
    return server, address["base_url"], address["model"]


def conversations(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"request {i}: describe the segment"}] for i in range(count)]


def backend_rate(transport: str, url: str, model: str, concurrency: int, count: int) -> float:
    config = HTTPConfig(base_url=url, transport=transport, concurrency=concurrency, max_retries=0)
    with HTTPChatBackend(model, config, GenerationConfig(max_new_tokens=64)) as llm:
        llm.complete(conversations(concurrency))  # warm-up: open the connections
        start = time.perf_counter()
        texts = llm.complete(conversations(count))
        elapsed = time.perf_counter() - start
    failed = sum(not isinstance(text, str) for text in texts)
    if failed:
        raise SystemExit(f"{transport}: {failed} of {count} requests failed, e.g. {texts[0]}")
    return count / elapsed


def httpx_sdk_rate(url: str, model: str, concurrency: int, count: int) -> float:
    """The openai SDK on its default httpx transport, with the same cap; not offered by the backend."""

    async def run() -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
        slots = asyncio.Semaphore(concurrency)

        async def one(messages: list[dict]) -> None:
            async with slots:
                await client.chat.completions.create(model=model, messages=messages, max_tokens=64)

        await asyncio.gather(*(one(m) for m in conversations(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(one(m) for m in conversations(count)))
        elapsed = time.perf_counter() - start
        await client.close()
        return count / elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer waves of requests")
    parser.add_argument("--latency", type=float, default=0.25, help="server latency L, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[128, 32], help="caps C to measure")
    args = parser.parse_args()
    waves = 4 if args.quick else 12
    server, url, model = start_server(args.latency)
    ratios: dict[str, float] = {}
    try:
        for concurrency in args.concurrency:
            capacity = concurrency / args.latency
            count = waves * concurrency
            for name in TRANSPORTS:
                if name == "openai_httpx":
                    rate = httpx_sdk_rate(url, model, concurrency, count)
                else:
                    rate = backend_rate(name, url, model, concurrency, count)
                ratios[f"{name}_c{concurrency}"] = rate / capacity
                print(
                    f"C={concurrency:4d} L={args.latency:g}s {name:13s} {rate:7.1f} req/s "
                    f"of {capacity:6.1f}: {rate / capacity:.2f}",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    first = args.concurrency[0]
    others = " ".join(f"{key}={value:.2f}" for key, value in ratios.items())
    print(f"RESULT http_saturation={ratios[f'aiohttp_c{first}']:.2f} {others}")


if __name__ == "__main__":
    main()
