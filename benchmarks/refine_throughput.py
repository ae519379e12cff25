"""Does the refine stage keep an LLM server busy, and how long are its prompts?

Saturation: the fake Chat Completions server runs in its own process and answers every request with
a valid annotation after a fixed latency L; with at most C requests in flight it can answer C / L per
second. The stage refines synthetic records (balanced caption trees, 31 selected nodes each) for
`rounds` rounds, caching every node to disk as it goes; achieved LLM calls per second ÷ (C / L) is
the saturation (nodes refined per second = calls per second ÷ rounds). Measured on the stage's
default path for the HTTP backend (one request per node call, nodes never wait for each other) and,
for comparison, on its path for backends without an async API (one batch per round for all nodes).

Prompt tokens: the first request of every selected node of the official sample record, counted as
the stage counts them (by estimate when no tokenizer is configured), against the budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # data_build/ is not an installed package

from action100m.backends import LLM, GenerationConfig, HTTPConfig  # noqa: E402
from action100m.backends.http_backend import HTTPChatBackend  # noqa: E402
from action100m.dataset.schema import Node, VideoRecord, read_official_json  # noqa: E402
from action100m.refine.prompt import PromptBuilder, PromptConfig  # noqa: E402
from action100m.refine.tokens import TokenCounter  # noqa: E402
from action100m.testing.fake_server import FakeChatServer  # noqa: E402
from data_build.refine import RefineConfig, refine_records, select_nodes  # noqa: E402

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "action100m_official" / "hySSAAw4t24.json"
ANSWER = json.dumps(
    {
        "summary": {
            "brief": "A person stirs a pot of soup on the stove.",
            "detailed": "A person in a blue apron stirs a pot of tomato soup with a wooden spoon.",
        },
        "action": {
            "brief": "stir the soup",
            "detailed": "Stir the soup slowly with a wooden spoon.",
            "actor": "a person in a blue apron",
        },
    }
)
CAPTION = (
    "A person in a blue apron stands at a stove and stirs a pot of soup with a wooden spoon. "
    "Steam rises from the pot while the camera stays on the counter."
)


def serve(latency: float) -> None:
    """The server process: valid answers after `latency` seconds, until terminated."""
    with FakeChatServer(latency_s=latency, reply=lambda messages, fmt: ANSWER, keep_requests=0) as server:
        print(json.dumps({"base_url": server.base_url, "model": server.model}), flush=True)
        threading.Event().wait()


def start_server(latency: float) -> tuple[subprocess.Popen, str, str]:
    command = [sys.executable, __file__, "--serve", "--latency", str(latency)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    address = json.loads(server.stdout.readline())
    return server, address["base_url"], address["model"]


def synthetic_record(uid: str, depth: int = 6) -> VideoRecord:
    """A balanced binary tree over 2**depth seconds: 2**(depth-1) - 1 non-leaf nodes of ≥ 4 s."""
    nodes, spans = [], [(f"{uid}-0", None, 0, 0.0, float(2**depth))]
    while spans:
        node_id, parent, level, start, end = spans.pop()
        leaf = level == depth - 1
        nodes.append(
            Node(
                node_id,
                parent,
                level,
                start,
                end,
                frame_caption=CAPTION if leaf else None,
                segment_caption=CAPTION,
                action_label="stir the soup",
            )
        )
        if not leaf:
            middle = (start + end) / 2
            spans += [
                (f"{node_id}0", node_id, level + 1, start, middle),
                (f"{node_id}1", node_id, level + 1, middle, end),
            ]
    transcript = [
        {"time": str(t), "text": "now we keep stirring so it does not burn"} for t in range(0, 2**depth, 4)
    ]
    metadata = {
        "title": "Tomato soup in 10 minutes",
        "description": "Easy soup. Subscribe!",
        "transcript": transcript,
    }
    return VideoRecord(uid, metadata, nodes).validate()


class BatchOnly(LLM):
    """The HTTP backend seen through the batch API only, as a backend without `acomplete` is."""

    def __init__(self, backend: HTTPChatBackend):
        self.backend, self.kind, self.model_id, self.generation = (
            backend,
            backend.kind,
            backend.model_id,
            backend.generation,
        )

    def complete(self, conversations, json_schema=None):
        return self.backend.complete(conversations, json_schema)

    def describe(self):
        return self.backend.describe()


def saturation(url: str, model: str, args: argparse.Namespace, videos: int, batch_only: bool) -> float:
    http = HTTPConfig(base_url=url, concurrency=args.concurrency, max_retries=0, timeout_s=60)
    records = [synthetic_record(f"v{i}") for i in range(videos)]
    with HTTPChatBackend(model, http, GenerationConfig(max_new_tokens=512)) as backend:
        backend.complete(
            [[{"role": "user", "content": "warm-up"}]] * args.concurrency
        )  # open the connections
        llm = BatchOnly(backend) if batch_only else backend
        with tempfile.TemporaryDirectory() as work_dir:
            start = time.perf_counter()
            result = refine_records(records, RefineConfig(rounds=args.rounds), llm, Path(work_dir))
            elapsed = time.perf_counter() - start
    if result.failures or result.annotated != result.selected:
        raise SystemExit(
            f"{len(result.failures)} of {result.selected} nodes failed, e.g. {result.failures[:1]}"
        )
    capacity = args.concurrency / args.latency
    rate = result.llm_calls / elapsed
    path = "one batch per round" if batch_only else "one request per call"
    print(
        f"{path:20s}: {result.selected} nodes, {result.llm_calls} calls in {elapsed:.2f} s: "
        f"{rate:.0f} calls/s ({rate / args.rounds:.0f} nodes/s) of {capacity:.0f}: {rate / capacity:.2f}",
        flush=True,
    )
    return rate / capacity


def prompt_tokens() -> float | None:
    if not OFFICIAL.is_file():
        print(f"prompt tokens: skipped, no official sample at {OFFICIAL}")
        return None
    [record] = read_official_json(OFFICIAL)
    cfg, children = PromptConfig(), record.children()
    builder, untrimmed = (
        PromptBuilder(cfg, TokenCounter()),
        PromptBuilder(PromptConfig(token_budget=10**9), TokenCounter()),
    )
    nodes = select_nodes(record, 4.0, children)
    tokens = np.array([builder.build(record, node, children).tokens for node in nodes])
    full = np.array([untrimmed.build(record, node, children).tokens for node in nodes])
    p50, p95 = np.percentile(tokens, [50, 95])
    print(
        f"prompt tokens on the official sample ({len(nodes)} nodes, {TokenCounter().name}): p50 {p50:.0f}, "
        f"p95 {p95:.0f}, max {tokens.max()} of the budget {cfg.token_budget}; "
        f"{(full > tokens).sum()} nodes trimmed (untrimmed p95 {np.percentile(full, 95):.0f}, max {full.max()})"
    )
    return float(p95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer nodes")
    parser.add_argument("--latency", type=float, default=0.25, help="server latency L, seconds")
    parser.add_argument("--concurrency", type=int, default=128, help="requests in flight C")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.latency)
    videos = 16 if args.quick else 64
    server, url, model = start_server(args.latency)
    try:
        ratio = saturation(url, model, args, videos, batch_only=False)
        batched = saturation(url, model, args, videos, batch_only=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    p95 = prompt_tokens()
    shown = "NA" if p95 is None else f"{p95:.0f}"
    print(
        f"RESULT refine_saturation={ratio:.2f} prompt_tokens_p95={shown} batch_saturation={batched:.2f} "
        f"prompt_token_budget={PromptConfig().token_budget}"
    )


if __name__ == "__main__":
    main()
