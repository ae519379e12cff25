"""Soak: under a server that misbehaves for a long time, does the HTTP backend answer or record every
request, never hang, and leak nothing?

The fake Chat Completions server runs in its own process on 127.0.0.1 (so the figures below are the
client's alone) and misbehaves on a seeded schedule (`fault_mix`): 5xx, 429 with Retry-After, requests
held past the client's timeout, malformed JSON, bodies cut off mid-way, reset connections. At seeded
times (several per soak, about a minute apart in long ones) it is killed and started again on the same
port a few seconds later; the backend's circuit breaker must hold requests meanwhile. `in_flight` workers send one conversation after another
through `acomplete`, as the refine stage sends one request per node call, until the time is up.

Figures: requests sent, answers (the fake server echoes, so an answer is checked to be its own
request's), recorded failures (`BackendError`), unaccounted (sent - answers - failures: exceptions
that escaped, wrong answers, calls past the bound the config allows), asyncio tasks and threads left
and file descriptors open afterwards against before, and RSS growth from after the warm-up to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from action100m.testing.fake_server import (
    HANG,
    MALFORMED,
    RESET,
    TRUNCATED,
    Behaviour,
    FakeChatServer,
    Status,
    fault_mix,
)

RETRY_AFTER_S = 1
FAULTS: dict[Behaviour, float] = {
    500: 0.02,
    502: 0.01,
    503: 0.01,
    Status(429, RETRY_AFTER_S): 0.03,
    HANG: 0.005,
    MALFORMED: 0.03,
    TRUNCATED: 0.03,
    RESET: 0.03,
}
LATENCY_S = 0.05
# Short enough that a soak sees every path many times; the bound on a call follows from them.
HTTP_SETTINGS: dict[str, Any] = {
    "timeout_s": 2.0,
    "max_retries": 3,
    "backoff_base_s": 0.05,
    "backoff_max_s": 1.0,
    "breaker_failures": 8,
    "breaker_wait_s": 15.0,
    "breaker_backoff_max_s": 1.0,
}
HANG_S = 3 * HTTP_SETTINGS["timeout_s"]
DOWN_S = (2.0, 4.0)  # how long an outage lasts, before the restarted server's start-up
MAX_RSS_GROWTH = 0.10


def call_bound_s(http: Any) -> float:
    """The longest one call may take under `http` (an HTTPConfig) with the server coming back.

    A request makes at most max_retries + 2 attempts (the breaker holds one that ran out once more),
    each within timeout_s; it backs off before each retry at most the larger of its exponential step
    and the server's Retry-After, both capped at backoff_max_s; and before each attempt it may wait
    on an open breaker, which gives up breaker_wait_s into an outage, checking after a probe backoff
    of at most breaker_backoff_max_s."""
    attempts = http.max_retries + 2
    backoffs = sum(
        max(min(http.backoff_max_s, http.backoff_base_s * 2**k), min(RETRY_AFTER_S, http.backoff_max_s))
        for k in range(attempts - 1)
    )
    return attempts * (http.timeout_s + http.breaker_wait_s + http.breaker_backoff_max_s) + backoffs


class ServerProcess:
    """The fake server in a child process, killed and started again on the same port for an outage."""

    def __init__(self, seed: int) -> None:
        self.seed, self.port, self.starts = seed, 0, 0
        self._process: subprocess.Popen[str] | None = None
        self.base_url, self.model = self.start()

    def start(self) -> tuple[str, str]:
        # Each start misbehaves on a schedule of its own: the restarted server counts from 0 again.
        command = [sys.executable, __file__, "--serve", "--port", str(self.port)]
        command += ["--seed", str(self.seed * 1000 + self.starts)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake server did not start on 127.0.0.1:{self.port} (see its stderr)")
        address = json.loads(line)
        self.port, self.starts = address["port"], self.starts + 1
        return address["base_url"], address["model"]

    def kill(self) -> None:
        """Go away at once, as a crashed server does: the kernel closes its connections."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            assert self._process.stdout is not None
            self._process.stdout.close()
            self._process = None


def serve(port: int, seed: int) -> None:
    """The server process: the fault mix after `LATENCY_S`, until killed."""
    script = fault_mix(FAULTS, seed)
    with FakeChatServer(
        latency_s=LATENCY_S, script=script, hang_s=HANG_S, keep_requests=0, port=port
    ) as server:
        print(
            json.dumps({"base_url": server.base_url, "model": server.model, "port": server.port}), flush=True
        )
        threading.Event().wait()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> dict[str, str]:
    """fd -> what it is (socket:[inode], pipe:[inode], a path), for naming what leaked."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return fds


def failure_kind(message: str) -> str:
    for needle, kind in (
        ("HTTP 429", "429"),
        ("HTTP 5", "5xx"),
        ("timed out", "timeout"),
        ("unreadable", "unreadable"),
        ("connection error", "connection"),
        ("down:", "outage"),
    ):
        if needle in message:
            return kind
    return "other"


@dataclass
class Tally:
    sent: int = 0
    answers: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    wrong: int = 0
    hangs: int = 0
    escaped: Counter[str] = field(default_factory=Counter)
    longest_s: float = 0.0


async def drive(
    llm: Any, seconds: float, in_flight: int, bound_s: float, outages: ServerProcess, seed: int
) -> tuple[Tally, int, float]:
    """Send until `seconds` are up, with outages on the way; the tally, RSS after warm-up, and the
    seconds it ran."""
    tally, start = Tally(), time.monotonic()
    deadline = start + seconds
    warm_up_s = min(max(0.1 * seconds, 2.0), 60.0)

    async def worker(index: int) -> None:
        sent = 0
        while time.monotonic() < deadline:
            text = f"worker {index} request {sent}"
            sent += 1
            tally.sent += 1
            began = time.monotonic()
            try:
                [reply] = await asyncio.wait_for(
                    llm.acomplete([[{"role": "user", "content": text}]]), bound_s
                )
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
                tally.hangs += 1
                continue
            except Exception as err:  # noqa: BLE001 - what escapes the backend is what the soak counts
                tally.escaped[type(err).__name__] += 1
                continue
            finally:
                tally.longest_s = max(tally.longest_s, time.monotonic() - began)
            if isinstance(reply, str):
                tally.answers += reply == text
                tally.wrong += reply != text
            else:
                tally.failures[failure_kind(str(reply))] += 1

    async def outage_schedule() -> None:
        rng = random.Random(seed)
        period = min(max(seconds / 3, 4.0), 120.0)
        while True:
            wait, down = rng.uniform(0.25, 0.75) * period, rng.uniform(*DOWN_S)
            # No outage the drive would end in: the server must be seen to come back.
            if time.monotonic() + wait + down > deadline:
                return
            await asyncio.sleep(wait)
            await asyncio.to_thread(outages.kill)
            await asyncio.sleep(down)
            await asyncio.to_thread(outages.start)

    async def rss_after_warm_up() -> int:
        await asyncio.sleep(warm_up_s)
        gc.collect()
        return rss_bytes()

    warm = asyncio.ensure_future(rss_after_warm_up())
    await asyncio.gather(outage_schedule(), *(worker(i) for i in range(in_flight)))
    return tally, await warm, time.monotonic() - start


def backend_tasks(llm: Any) -> int:
    """Tasks alive on the backend's own loop (private: nothing public exposes the loop)."""
    loop = llm._loop.loop

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # less this one

    return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=10)


def run_soak(seconds: float, in_flight: int = 128, seed: int = 0) -> dict[str, Any]:
    """Soak the HTTP backend for `seconds` at `in_flight` requests; the figures, by name."""
    # Imported here: the server process runs this file too, and must come back from an outage
    # without paying for torch.
    from action100m.backends import BackendConfig, GenerationConfig, HTTPConfig, build_backend

    gc.collect()
    fds_before, threads_before = open_fds(), threading.active_count()
    server = ServerProcess(seed)
    try:
        http = HTTPConfig(base_url=server.base_url, concurrency=in_flight, **HTTP_SETTINGS)
        config = BackendConfig(
            interface="llm",
            kind="openai",
            model=server.model,
            http=http,
            generation=GenerationConfig(max_new_tokens=64),
        )
        bound_s = call_bound_s(http)
        llm = build_backend(config)
        try:
            tally, rss_warm, ran_s = asyncio.run(drive(llm, seconds, in_flight, bound_s, server, seed))
            gc.collect()
            rss_end = rss_bytes()
            tasks_left = backend_tasks(llm)
        finally:
            llm.close()
    finally:
        server.kill()
    gc.collect()
    leaked = sorted(set(open_fds().items()) - set(fds_before.items()))
    failures = sum(tally.failures.values())
    return {
        "seconds": ran_s,
        "requests": tally.sent,
        "answers": tally.answers,
        "failures": failures,
        "failure_kinds": dict(tally.failures),
        "unaccounted": tally.sent - tally.answers - failures,
        "wrong_answers": tally.wrong,
        "escaped": dict(tally.escaped),
        "hangs": tally.hangs,
        "hang_bound_s": bound_s,
        "longest_call_s": tally.longest_s,
        "outages": server.starts - 1,
        "task_leak": tasks_left,
        "thread_leak": threading.active_count() - threads_before,
        "fd_leak": len(leaked),
        "leaked_fds": [target for _, target in leaked],
        "rss_warm_mb": rss_warm / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "rss_growth": (rss_end - rss_warm) / rss_warm,
    }


def passed(figures: dict[str, Any]) -> bool:
    leaks = figures["task_leak"] or figures["thread_leak"] or figures["fd_leak"]
    return (
        not (figures["unaccounted"] or figures["hangs"] or leaks) and figures["rss_growth"] <= MAX_RSS_GROWTH
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60 s instead of 30 min")
    parser.add_argument("--seconds", type=float, help="how long to soak (overrides --quick)")
    parser.add_argument("--in-flight", type=int, default=128, help="requests in flight")
    parser.add_argument("--seed", type=int, default=0, help="picks the faults and the outages")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.port, args.seed)
    seconds = args.seconds if args.seconds is not None else 60.0 if args.quick else 1800.0
    f = run_soak(seconds, args.in_flight, args.seed)
    rows = [
        ("ran", f"{f['seconds']:.1f} s at {args.in_flight} in flight, {f['outages']} outages"),
        ("requests", f"{f['requests']} ({f['requests'] / f['seconds']:.0f}/s)"),
        (
            "answers",
            f"{f['answers']} ({f['answers'] / max(f['requests'], 1):.2%}), {f['wrong_answers']} wrong",
        ),
        ("failures", f"{f['failures']} {f['failure_kinds']}"),
        ("unaccounted", f"{f['unaccounted']} (escaped {f['escaped']}, hangs {f['hangs']})"),
        ("longest call", f"{f['longest_call_s']:.2f} s of the bound {f['hang_bound_s']:.1f} s"),
        (
            "leaks",
            f"tasks {f['task_leak']}, threads {f['thread_leak']}, fds {f['fd_leak']} {f['leaked_fds']}",
        ),
        (
            "RSS",
            f"{f['rss_warm_mb']:.1f} MB after warm-up, {f['rss_end_mb']:.1f} MB at the end: {f['rss_growth']:+.1%}",
        ),
    ]
    for name, value in rows:
        print(f"{name:13s} {value}")
    print(
        f"RESULT soak_seconds={f['seconds']:.0f} soak_requests={f['requests']} soak_answers={f['answers']} "
        f"soak_failures={f['failures']} soak_unaccounted={f['unaccounted']} soak_task_leak={f['task_leak']} "
        f"soak_fd_leak={f['fd_leak']} soak_rss_growth={f['rss_growth']:.3f} soak_hangs={f['hangs']} "
        f"soak_thread_leak={f['thread_leak']}"
    )
    if not passed(f):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
