"""Batched vs one-at-a-time generation with the transformers backend, side by side in one run.

Tiny random-init models of the paper's classes (Llama for the LLM, Llama-3.2-Vision for frame
captions, Perception-LM for segment captions) generate the same greedy replies to the same inputs
with `batch_size` 1 and `batch_size` B; the ratio of their throughputs is the speedup batching buys.
The toy models never emit special tokens, so every reply has exactly `max_new_tokens` tokens and both
runs do the same work. On a GPU with real models the per-step cost is larger and so is the gain.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from action100m.backends import GenerationConfig, TransformersConfig
from action100m.backends.transformers_backend import (
    TransformersImageCaptioner,
    TransformersLLM,
    TransformersVideoCaptioner,
)
from action100m.tiny.backends import tiny_llm, tiny_mllama, tiny_perception_lm


def throughput(run: Callable[[], list]) -> tuple[float, list]:
    start = time.perf_counter()
    results = run()
    return len(results) / (time.perf_counter() - start), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer inputs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same single core for both runs: the comparison is of batching alone
    count = 32 if args.quick else 96
    generation = GenerationConfig(max_new_tokens=args.max_new_tokens)
    words = "describe what happens in this video segment a person stirs the mixture in a bowl".split()
    conversations = [[{"role": "user", "content": " ".join(words[: 3 + i % 12])}] for i in range(count)]
    generator = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (48, 64, 3), dtype=torch.uint8, generator=generator) for _ in range(count)
    ]
    clips = [
        torch.randint(0, 256, (8, 48, 64, 3), dtype=torch.uint8, generator=generator)
        for _ in range(count // 2)
    ]

    cases = {
        "llm": (tiny_llm(), TransformersLLM, lambda backend: backend.complete(conversations)),
        "image": (
            tiny_mllama(),
            TransformersImageCaptioner,
            lambda backend: backend.caption_images(images, "describe"),
        ),
        "video": (
            tiny_perception_lm(),
            TransformersVideoCaptioner,
            lambda backend: backend.caption_videos(clips, "describe"),
        ),
    }
    speedups: dict[str, float] = {}
    for name, ((model, processor), backend_class, run) in cases.items():
        rates, outputs = {}, {}
        for batch_size in (1, args.batch_size):
            backend = backend_class(
                model, processor, f"tiny-{name}", generation, TransformersConfig(batch_size=batch_size)
            )
            run(backend)  # warm-up
            rates[batch_size], outputs[batch_size] = throughput(lambda b=backend, r=run: r(b))
        speedups[name] = rates[args.batch_size] / rates[1]
        same = outputs[1] == outputs[args.batch_size]
        print(
            f"{name:5s} {type(model).__name__:38s} one at a time {rates[1]:7.1f}/s   batch {args.batch_size}: "
            f"{rates[args.batch_size]:7.1f}/s   speedup {speedups[name]:5.2f}   identical replies: {same}"
        )
    print(
        f"RESULT batch_speedup={speedups['llm']:.2f} batch_speedup_image={speedups['image']:.2f} "
        f"batch_speedup_video={speedups['video']:.2f}"
    )


if __name__ == "__main__":
    main()
