"""Does the build keep its segmentation device and its LLM server busy at once?

The same SynthActions videos are built twice from empty caches, one batch at a time through every
stage (`batches_in_flight=1`: the build's order before it was pipelined) and pipelined (the default).
The tiny V-JEPA 2 (`segment.features=vjepa2 segment.model=tiny`, at 64-pixel crops) segments on one
CPU thread, which stands for the task's GPU; two fake Chat Completions servers
(action100m/testing/fake_server.py, a fixed latency per request, in a process of their own) serve the
captions and the Self-Refine rounds (3, the paper's). For each order:

  segment_busy        the segmentation's work (its seconds in the one-batch build, where it runs
                      alone) over the build's wall time: the share of the time the device works
  segment_stage_busy  the pipelined build's seconds in its segment stage over its wall time: the
                      share of the time the device had a batch in hand (more than the above when the
                      stages' threads slow each other down on a small machine)
  server_occupancy    the LLM server's requests in flight, averaged over the build's wall time, over
                      the client's cap (`http.concurrency`)
  cpu_busy            the whole machine's CPU use during the pipelined build, whoever used it

The balance modelled: the paper spends about as much on stage 3 (0.3M H100-hours of GPT-OSS-120B,
an H100 serving several times what a V100 does) as on stages 1-2 (1.3M V100-hours), so a deployment
sizes its LLM servers to the rate at which its segmentation GPUs produce trees. The LLM latency is set,
from videos segmented alone first, so that the server time of a batch's refinement equals the batch's
segmentation time (`--llm-balance 1`); the caption server's, half of it (`--caption-balance 0.5`).
Then a perfect pipeline keeps both busy nearly all the time, and one batch at a time leaves each idle
while the other works; at other balances only the slower side can stay busy. The 64-pixel crops make
a video's segmentation outweigh the client's own CPU work on its requests (decoding and encoding
frames, building prompts), as the ViT-g's GPU time does in the paper's build; at the tiny model's
32 pixels the client's work is as large as the device's, and on two cores the two compete.

    python benchmarks/build_pipeline.py [--quick] [--videos N] [--batch-videos B] [--llm-balance X]

--quick: 12 videos in batches of 2 (one shard of 6 batches); without it the paper preset's shard,
100 videos in batches of 8 (13 batches). Each shard fills and drains the pipeline once, which costs
about a batch of each stage. Ends with `RESULT segment_busy=.. server_occupancy=..
sequential_segment_busy=.. sequential_server_occupancy=.. speedup=.. segment_stage_busy=..
cpu_busy=..` (speedup: the one-batch build's wall time over the pipelined build's). The two builds'
shards must be the same bytes, or the script fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # data_build/ is not an installed package

from action100m.backends import BackendConfig, GenerationConfig, HTTPConfig  # noqa: E402
from action100m.config import load_config  # noqa: E402
from action100m.synth.generate import generate_dataset  # noqa: E402
from action100m.testing.fake_server import FakeChatServer, echo  # noqa: E402
from data_build.cache import stage_hashes  # noqa: E402
from data_build.config import BuildConfig  # noqa: E402
from data_build.inputs import read_input  # noqa: E402
from data_build.refine import select_nodes  # noqa: E402
from data_build.run import Builder, run_build  # noqa: E402

ANSWER = json.dumps(
    {
        "summary": {
            "brief": "A person works at a table.",
            "detailed": "A person works at a table with tools.",
        },
        "action": {
            "brief": "assemble a part",
            "detailed": "Assemble a part with both hands.",
            "actor": "a person",
        },
    }
)


def reply(messages: list[dict], response_format: dict | None = None) -> str:
    """Captions echo their prompt; refinement (the only caller sending a schema) gets a valid answer."""
    return echo(messages) if response_format is None else ANSWER


def serve_until_stdin_ends(caption_latency: float, llm_latency: float) -> None:
    """The servers' process: prints their addresses, then answers each line it reads with their
    request-seconds so far (action100m.testing.fake_server); stops at the end of its input."""
    with (
        FakeChatServer(latency_s=caption_latency, reply=reply, keep_requests=0) as captions,
        FakeChatServer(latency_s=llm_latency, reply=reply, keep_requests=0) as llm,
    ):
        print(
            json.dumps({"captions": captions.base_url, "llm": llm.base_url, "model": llm.model}), flush=True
        )
        for _ in sys.stdin:
            print(
                json.dumps({"captions": captions.request_seconds(), "llm": llm.request_seconds()}), flush=True
            )


class Servers:
    """The caption and LLM servers in a process of their own, off the builder's interpreter lock."""

    def __init__(self, caption_latency: float, llm_latency: float) -> None:
        command = [sys.executable, __file__, "--serve", str(caption_latency), str(llm_latency)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.address = json.loads(self.process.stdout.readline())

    def request_seconds(self) -> dict[str, float]:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def build_config(manifest: Path, out: Path, args: argparse.Namespace, *overrides: str) -> BuildConfig:
    cfg = load_config(
        "build",
        [
            f"input={manifest}",
            f"output={out}",
            "segment.features=vjepa2",
            "segment.model=tiny",
            "segment.crop_size=64",
            "caption.mode=models",
            "caption.frames_per_segment=4",  # the fake server does not look at them
            "caption.segment_frame_size=32",
            "caption.image_short_side=32",
            "refine.mode=llm",
            "refine.rounds=3",  # the paper's
            "sample_video.mode=none",
            "progress=false",
            f"samples_per_shard={args.videos}",
            f"batch_videos={args.batch_videos}",
            *overrides,
        ],
    )
    return OmegaConf.to_object(cfg)


def point_at(cfg: BuildConfig, servers: Servers, args: argparse.Namespace) -> None:
    """The build's three backends on the servers: both captioners on one, the LLM on the other."""

    def backend(interface: str, url: str, concurrency: int) -> BackendConfig:
        http = HTTPConfig(base_url=url, concurrency=concurrency, max_retries=0, timeout_s=60)
        return BackendConfig(
            interface=interface,
            kind="openai",
            model=servers.address["model"],
            generation=GenerationConfig(max_new_tokens=32),
            http=http,
        )

    captions, llm = servers.address["captions"], servers.address["llm"]
    cfg.caption.frame_captioner = backend("image_captioner", captions, args.caption_concurrency)
    cfg.caption.segment_captioner = backend("video_captioner", captions, args.caption_concurrency)
    cfg.refine.llm = backend("llm", llm, args.llm_concurrency)


def calibrate(cfg: BuildConfig, folder: Path, videos: int) -> tuple[float, float, float]:
    """(segmentation seconds, caption requests, LLM requests) per video: the build's segment stage run
    alone over `videos` of the videos, into a scratch folder."""
    entries, input_hash = read_input(cfg)
    builder = Builder(cfg, folder, stage_hashes(cfg, input_hash))
    builder.segment(builder.open_sources(entries[:1], []), [])  # warm-up: imports, torch's first pass
    builder.seconds["segment"] = 0.0
    records = []
    for first in range(1, videos + 1, cfg.batch_videos):
        batch = entries[first : min(first + cfg.batch_videos, videos + 1)]
        pairs = builder.segment(builder.open_sources(batch, []), [])
        records += [record for record, _ in pairs]
        for _, source in pairs:
            source.close()
    leaves = sum(len(record.leaves()) for record in records)
    nodes = sum(len(record.nodes) for record in records)
    refined = sum(len(select_nodes(record, cfg.refine.min_duration)) for record in records)
    count = len(records)
    return (
        builder.seconds["segment"] / count,
        (leaves + 2 * nodes) / count,
        refined * cfg.refine.rounds / count,
    )


def measure(cfg: BuildConfig, servers: Servers, args: argparse.Namespace) -> dict[str, Any]:
    before, (busy, total) = servers.request_seconds(), machine_cpu_jiffies()
    start = time.perf_counter()
    summary = run_build(cfg)
    wall = time.perf_counter() - start
    after, (busy_after, total_after) = servers.request_seconds(), machine_cpu_jiffies()
    if summary["failures"] or summary["annotated_nodes"] == 0:
        raise SystemExit(
            f"the build failed: {summary['failures']} failures, {summary['annotated_nodes']} annotated"
        )
    return {
        "wall": wall,
        "stages": summary["stage_seconds"],
        "occupancy": (after["llm"] - before["llm"]) / wall / args.llm_concurrency,
        "caption_occupancy": (after["captions"] - before["captions"]) / wall / args.caption_concurrency,
        "annotated": summary["annotated_nodes"],
        # how busy the whole machine was, whoever used it: near 1, the CPU is what limits both orders
        "cpu_busy": (busy_after - busy) / (total_after - total),
    }


def machine_cpu_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of every core of the machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="12 videos in batches of 2 (default: 100 in 8s)")
    parser.add_argument("--videos", type=int, help="videos built, into one shard")
    parser.add_argument("--batch-videos", type=int, help="the builds' batch_videos")
    parser.add_argument("--in-flight", type=int, default=3, help="the pipelined build's batches_in_flight")
    parser.add_argument("--llm-balance", type=float, default=1.0, help="refine / segment time of a batch")
    parser.add_argument(
        "--caption-balance", type=float, default=0.5, help="caption / segment time of a batch"
    )
    parser.add_argument("--llm-concurrency", type=int, default=8, help="the LLM client's http.concurrency")
    parser.add_argument("--caption-concurrency", type=int, default=8, help="the captioners' http.concurrency")
    parser.add_argument("--serve", nargs=2, type=float, help=argparse.SUPPRESS)  # the servers' process
    args = parser.parse_args()
    if args.serve:
        return serve_until_stdin_ends(*args.serve)
    args.videos = args.videos or (12 if args.quick else 100)  # 100: the paper preset's shard
    args.batch_videos = args.batch_videos or (2 if args.quick else 8)  # 8: the paper preset's
    torch.set_num_threads(1)  # the segmentation device: one core of the two here

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_dataset(folder / "synth", videos=args.videos, seed=0)
        manifest = folder / "synth" / "manifest.jsonl"
        scratch = folder / "calibration"
        seconds, caption_requests, llm_requests = calibrate(
            build_config(manifest, scratch, args), scratch, min(args.videos - 1, 6 if args.quick else 16)
        )
        llm_latency = args.llm_balance * seconds * args.llm_concurrency / llm_requests
        caption_latency = args.caption_balance * seconds * args.caption_concurrency / caption_requests
        print(
            f"calibration: {seconds:.3f} s of segmentation, {caption_requests:.0f} caption and "
            f"{llm_requests:.0f} LLM requests per video -> latency {caption_latency * 1000:.1f} ms "
            f"(captions, {args.caption_concurrency} in flight), {llm_latency * 1000:.1f} ms "
            f"(LLM, {args.llm_concurrency} in flight)"
        )
        runs, shards = {}, {}
        with Servers(caption_latency, llm_latency) as servers:
            for name, in_flight in (("sequential", 1), ("pipelined", args.in_flight)):
                out = folder / name
                cfg = build_config(manifest, out, args, f"batches_in_flight={in_flight}")
                point_at(cfg, servers, args)
                runs[name] = measure(cfg, servers, args)
                shards[name] = {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}
    if shards["sequential"] != shards["pipelined"]:
        raise SystemExit("the pipelined build wrote other shard bytes than the sequential one")
    work = runs["sequential"]["stages"]["segment"]  # the segmentation's seconds where it runs alone
    for name, run in runs.items():
        run["segment_busy"] = work / run["wall"]
        print(
            f"{name:>10}: {run['wall']:5.1f} s; segment_busy {run['segment_busy']:.2f} (in its stage "
            f"{run['stages']['segment'] / run['wall']:.2f}), LLM server occupancy {run['occupancy']:.2f}, "
            f"caption server occupancy {run['caption_occupancy']:.2f}, machine CPU busy {run['cpu_busy']:.2f}; "
            f"{run['annotated']} nodes annotated; seconds in each stage {run['stages']}"
        )
    seq, pipe = runs["sequential"], runs["pipelined"]
    print(
        f"RESULT segment_busy={pipe['segment_busy']:.2f} server_occupancy={pipe['occupancy']:.2f} "
        f"sequential_segment_busy={seq['segment_busy']:.2f} sequential_server_occupancy={seq['occupancy']:.2f} "
        f"speedup={seq['wall'] / pipe['wall']:.2f} segment_stage_busy={pipe['stages']['segment'] / pipe['wall']:.2f} "
        f"cpu_busy={pipe['cpu_busy']:.2f}"
    )


if __name__ == "__main__":
    main()
