"""The paper presets at their real sizes on one CUDA GPU, with random weights (no download).

(a) segmentation: V-JEPA 2 ViT-g/16-384 over 64-frame 384² windows, bf16, SDPA, through the
    segmenter's own encode path (data_build.segment.VJEPA2Features), per window batch size;
(b) VL-JEPA (configs/model/vljepa_paper.yaml) training steps (forward, backward, clip, AdamW) under
    bf16 autocast as the trainer's bf16-mixed runs them, for each of the paper's three stages: 1 frame
    (stage 1, images) and 8 frames (stage 2) with the X-encoder frozen, 32 frames unfrozen (stage 3);
    activation checkpointing off and on; the per-GPU batch doubles up to the paper's (the cap);
(c) torchcodec decode of an H.264 file on NVDEC against the CPU.

Every sweep records why it stopped (out of memory, the cap, the time budget, an error), and a headline
figure comes only from sweeps that ran to memory's limit or the cap. `--budget-s` bounds the whole run,
model builds included: each part gets a share of what is left, and a configuration that would end past
its share is not started. Every configuration's failure is recorded with its traceback and the run goes
on; the JSON is rewritten after each one, so a run cut short still leaves its results. `--quick` runs
the same code on the CPU at toy sizes (action100m.models.paper_archs); without a GPU and without
--quick it refuses (exit 2).

It imports no video decoder and no Hydra, and tokenises with the tokenizer files named by
`--tokenizer`, so it runs on a lent GPU machine's own Python with the small bundle that
`make gpu-bundle` prepares (README: The GPU measurement).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402
from transformers import AutoTokenizer, VJEPA2Model  # noqa: E402
from transformers.modeling_layers import GradientCheckpointingLayer  # noqa: E402

from action100m.models.config import MINILM, model_preset  # noqa: E402
from action100m.models.hub import model_path  # noqa: E402
from action100m.models.paper_archs import (  # noqa: E402
    EMBEDDING_GEMMA,
    LLAMA_1B,
    VITG,
    VITL,
    paper_config,
    write_weightless,
)
from action100m.models.vljepa import VLJEPA  # noqa: E402
from action100m.utils.atomic import write_json_atomic  # noqa: E402
from data_build.segment import SegmentConfig, VJEPA2Features  # noqa: E402

DEFAULT_OUT = ROOT / "runs" / "gpu" / "results.json"
CAPTION = (
    "a person in a blue apron slices a red onion on a wooden board, sweeps the pieces into a pan with "
    "the side of the knife and stirs them with a spatula while the oil starts to sizzle"
)
TRACEBACK_CHARS = 2000  # the end of a failure's traceback, kept in the JSON

# Why a sweep stopped. A headline figure comes only from the first two: a sweep cut by time or broken
# by an error says nothing of the largest batch that fits.
OUT_OF_MEMORY, CAP, TIME_BUDGET, ERROR = "out of memory", "cap", "time budget", "error"

# The paper's three training stages (PAPER_NOTES, Table 2): frames, X-encoder frozen, and the per-GPU
# batch of its global batch on 24 nodes x 8 GPUs (24,576, 12,288 and 3,072 x 4 accumulated), the cap.
STAGES = {1: (1, True, 128), 2: (8, True, 64), 3: (32, False, 16)}

# Real and --quick sizes of everything the run varies.
SIZES = {
    False: dict(
        seg_batches=[1, 2, 4, 8, 16],
        window=64,
        stages=STAGES,
        warmup=2,
        repeats=3,
        video=(720, 1280, 300),
    ),
    True: dict(
        seg_batches=[1, 2],
        window=8,
        stages={1: (1, True, 4), 2: (4, True, 4), 3: (8, False, 2)},
        warmup=1,
        repeats=2,
        video=(48, 64, 30),
    ),
}
# Shares of the time budget: each part gets its weight's share of the time left when it starts, so
# time a part does not use passes to the later ones. Stage 3 (32 frames, unfrozen) costs the most.
PART_WEIGHTS = {"segmentation": 1.0, "stage1": 1.0, "stage2": 1.0, "stage3": 1.5, "decode": 0.3}


class Run:
    """Results so far, rewritten to `out` after each configuration, and the time budget: one deadline
    for the whole run, of which each part gets a share (`part_deadline`)."""

    def __init__(self, out: Path, environment: dict[str, Any], budget_s: float):
        self.out, self.environment, self.deadline = out, environment, time.monotonic() + budget_s
        self.results: dict[str, Any] = {}
        self.weights_left = sum(PART_WEIGHTS.values())

    def part_deadline(self, part: str) -> float:
        """When `part` must be done: its weight's share of the time left, counted from now."""
        left = max(0.0, self.deadline - time.monotonic())
        share = left * PART_WEIGHTS[part] / self.weights_left
        self.weights_left -= PART_WEIGHTS[part]
        return time.monotonic() + share

    def record(self, key: str, value: Any, row: str | None = None) -> None:
        self.results[key] = value
        if row:
            print(row, flush=True)
        write_json_atomic(self.out, {"environment": self.environment, "results": self.results})


def environment(device: torch.device, quick: bool, budget_s: float) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": str(device),
        "gpu": None,
        "driver": None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "quick": quick,
        "budget_s": budget_s,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
        try:
            env["driver"] = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory(device: torch.device) -> dict[str, Any]:
    """Peak memory since the last reset: allocated by tensors, reserved by the caching allocator (what
    the GPU gave up), and the allocator's retries (cache flushes to satisfy an allocation: a batch
    that needs them runs slower than its peak suggests). None on the CPU, which has no such counters."""
    if device.type != "cuda":
        return {"peak_gb": None, "peak_reserved_gb": None, "alloc_retries": None}
    stats = torch.cuda.memory_stats(device)
    return {
        "peak_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved(device) / 2**30, 2),
        "alloc_retries": int(stats.get("num_alloc_retries", 0)),
    }


def gb(result: dict[str, Any]) -> str:
    if result.get("peak_gb") is None:
        return "n/a"  # no peak memory counter on the CPU
    return (
        f"{result['peak_gb']} GB ({result['peak_reserved_gb']} reserved, {result['alloc_retries']} retries)"
    )


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Seconds per call, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def attempt(fn: Callable[[], dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """fn()'s result with the seconds it took, or {"error", "traceback", "seconds"}: one configuration's
    out-of-memory or failure must not end the run."""
    reset_memory(device)
    start = time.monotonic()
    try:
        result = fn()
    except torch.OutOfMemoryError:
        result = {"error": OUT_OF_MEMORY}
    except Exception as err:  # noqa: BLE001 - recorded, and the next configuration runs
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        result = {
            "error": f"{type(err).__name__}: {first}",
            "traceback": traceback.format_exc()[-TRACEBACK_CHARS:],
        }
    finally:
        reset_memory(device)
    return {**result, "seconds": round(time.monotonic() - start, 2)}


def fits_before(deadline: float, last: dict[str, Any] | None) -> bool:
    """Whether the next configuration, at twice the last one's batch, should end by `deadline`."""
    expected = 2 * last["seconds"] if last else 0.0
    return time.monotonic() + expected <= deadline


def stop_reason(result: dict[str, Any]) -> str:
    return OUT_OF_MEMORY if result["error"] == OUT_OF_MEMORY else ERROR


def sweep(
    run: Run,
    device: torch.device,
    tag: str,
    name: str,
    batches: list[int],
    deadline: float,
    measure: Callable[[int], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> tuple[list[dict[str, Any]], str]:
    """`measure(batch)` at each batch in turn, until one fails or would end past `deadline`; each result
    recorded as `{tag}_b{batch}` and printed on a row of `name`, the batch and `describe(result)` (or its
    error). Returns the results that fitted, and why the sweep stopped."""
    fitted: list[dict[str, Any]] = []
    for batch in batches:
        if not fits_before(deadline, fitted[-1] if fitted else None):
            return fitted, TIME_BUDGET
        result = attempt(partial(measure, batch), device)
        row = f"{name} b{batch:<3} {result['error'] if 'error' in result else describe(result)}"
        run.record(f"{tag}_b{batch}", result, row)
        if "error" in result:
            return fitted, stop_reason(result)
        fitted.append(result)
    return fitted, CAP


def headline(sweeps: list[tuple[list[dict[str, Any]], str]], rate: str) -> dict[str, Any] | None:
    """The fastest result by `rate` of the sweeps (results that fitted, why it stopped) that ran to
    memory's limit or the cap; None where none did: a sweep cut by time or an error has not found
    the batch that runs fastest."""
    complete = [r for fitted, stopped in sweeps if stopped in (OUT_OF_MEMORY, CAP) for r in fitted]
    return max(complete, key=lambda r: r[rate]) if complete else None


# -- (a) segmentation ------------------------------------------------------------------------------


def bench_segmentation(run: Run, device: torch.device, quick: bool, size: dict[str, Any]) -> dict[str, Any]:
    deadline = run.part_deadline("segmentation")
    if time.monotonic() >= deadline:
        run.record("vitg_stopped", TIME_BUDGET, f"segment vitg stopped: {TIME_BUDGET}")
        return {}
    config = paper_config(VITG, quick=quick)
    with torch.device(device):
        model = VJEPA2Model(config).to(torch.bfloat16).eval()
    window = size["window"]

    def one(batch: int) -> dict[str, Any]:
        cfg = SegmentConfig(
            model=VITG, window=window, batch_windows=batch, device=str(device), dtype="bfloat16"
        )
        features = VJEPA2Features(cfg, model=model)
        clips = [
            torch.randint(0, 256, (window, 3, features.crop, features.crop), dtype=torch.uint8)
            for _ in range(batch)
        ]
        seconds = timed(lambda: features._encode(clips), device, size["warmup"], size["repeats"])
        return {
            "batch": batch,
            "s_per_batch": round(seconds, 4),
            "windows_per_s": round(batch / seconds, 3),
            "frames_per_s": round(batch * window / seconds, 1),
            **memory(device),
        }

    def describe(result: dict[str, Any]) -> str:
        return f"{result['windows_per_s']:8.2f} windows/s {result['frames_per_s']:9.1f} frames/s peak {gb(result)}"

    name = f"segment vitg {window}f {config.crop_size}px"
    fitted, stopped = sweep(run, device, "vitg", name, size["seg_batches"], deadline, one, describe)
    run.record("vitg_stopped", stopped, f"segment vitg stopped: {stopped}")
    best = headline([(fitted, stopped)], "windows_per_s")
    if best:
        run.record("vitg_windows_per_s", best["windows_per_s"])
        run.record("vitg_frames_per_s", best["frames_per_s"])
        run.record("vitg_peak_gb", best["peak_gb"])
        run.record("vitg_batch", best["batch"])
    return {}


# -- (b) VL-JEPA training steps --------------------------------------------------------------------


def paper_vljepa(folder: Path, frames: int, frozen: bool, quick: bool, tokenizer: str) -> VLJEPA:
    """configs/model/vljepa_paper.yaml with its three models built from weightless checkpoints; the
    query and the texts are tokenised with `tokenizer` (Llama's and Gemma's are gated; a tokenizer
    only sets token ids, and the vocabularies are larger than MiniLM's)."""
    vitl = write_weightless(paper_config(VITL, quick=quick), folder / "x")
    llama = write_weightless(paper_config(LLAMA_1B, quick=quick), folder / "predictor")
    gemma = write_weightless(paper_config(EMBEDDING_GEMMA, quick=quick), folder / "y")
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(gemma)
    cfg = model_preset("vljepa_paper")
    cfg.num_frames = frames
    cfg.crop_size = paper_config(VITL, quick=quick).crop_size
    cfg.x_encoder.name, cfg.x_encoder.freeze = str(vitl), frozen
    cfg.predictor.name, cfg.predictor.tokenizer = str(llama), tokenizer
    cfg.y_encoder.name = str(gemma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VLJEPA(cfg)


def set_checkpointing(model: torch.nn.Module, enable: bool) -> None:
    """Activation checkpointing of every transformer layer (the frozen X-encoder's run in eval mode,
    which transformers never checkpoints)."""
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module.gradient_checkpointing = enable
            module._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)


def train_step(
    model: VLJEPA, optimizer: torch.optim.Optimizer, clips: torch.Tensor, texts: list[str]
) -> None:
    """One optimizer step as the trainer takes it: bf16 autocast over fp32 weights, norm clipped to 1."""
    with torch.autocast(clips.device.type, dtype=torch.bfloat16):
        loss, _ = model.loss(model.predict(clips), model.y_encoder(texts))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sweep_batches(
    run: Run,
    device: torch.device,
    size: dict[str, Any],
    model: VLJEPA,
    optimizer: torch.optim.Optimizer,
    tag: str,
    frames: int,
    cap: int,
    deadline: float,
) -> tuple[list[dict[str, Any]], str]:
    """Batches doubling from 1 to `cap` until one fails or would end past `deadline`: the results that
    fitted, and why the sweep stopped."""
    crop = model.crop_size

    def one(batch: int) -> dict[str, Any]:
        texts = [f"{CAPTION} ({i})" for i in range(batch)]
        clips = torch.randn(batch, frames, 3, crop, crop, device=device)
        try:
            seconds = timed(
                lambda: train_step(model, optimizer, clips, texts), device, size["warmup"], size["repeats"]
            )
        finally:
            optimizer.zero_grad(set_to_none=True)  # an OOM mid-backward leaves gradients behind
        return {
            "batch": batch,
            "step_s": round(seconds, 4),
            "samples_per_s": round(batch / seconds, 2),
            **memory(device),
        }

    def describe(result: dict[str, Any]) -> str:
        return f"{result['step_s']:8.3f} s/step {result['samples_per_s']:8.1f} samples/s peak {gb(result)}"

    batches = [2**n for n in range(cap.bit_length())]  # 1, 2, 4, ... up to cap
    return sweep(run, device, tag, f"train {tag:<24}", batches, deadline, one, describe)


def bench_stage(
    run: Run, device: torch.device, quick: bool, size: dict[str, Any], stage: int, tokenizer: str
) -> dict[str, Any]:
    """One model of the stage; activation checkpointing off, then on (half the time each); each result
    is recorded as it comes. The stage's headline: the best samples/s of the sweeps that ran to memory's
    limit or the cap."""
    deadline = run.part_deadline(f"stage{stage}")
    frames, frozen, cap = size["stages"][stage]
    if time.monotonic() >= deadline:
        run.record(f"vljepa_stage{stage}_stopped", TIME_BUDGET, f"train stage {stage} stopped: {TIME_BUDGET}")
        return {}
    with tempfile.TemporaryDirectory() as folder:
        model = paper_vljepa(Path(folder), frames, frozen, quick, tokenizer).to(device).train()
    optimizer = model.configure_optimizers()["optimizer"]
    sweeps = []
    for ckpt in (False, True):
        set_checkpointing(model, ckpt)
        tag = f"vljepa_stage{stage}_{'ckpt' if ckpt else 'nockpt'}"
        sweep_deadline = deadline if ckpt else time.monotonic() + (deadline - time.monotonic()) / 2
        fitted, stopped = sweep_batches(run, device, size, model, optimizer, tag, frames, cap, sweep_deadline)
        run.record(f"{tag}_max_batch", fitted[-1]["batch"] if fitted else 0)
        run.record(f"{tag}_stopped", stopped, f"train {tag} stopped: {stopped}")
        sweeps.append(([{**r, "checkpointing": ckpt} for r in fitted], stopped))
    best = headline(sweeps, "samples_per_s")
    if best:
        prefix = f"vljepa_stage{stage}"
        for key in ("samples_per_s", "step_s", "batch", "peak_gb", "checkpointing"):
            run.record(f"{prefix}_{key}", best[key])
    return {}


def bench_training(run: Run, device: torch.device, quick: bool, size: dict[str, Any], tokenizer: str) -> None:
    for stage in size["stages"]:
        result = attempt(partial(bench_stage, run, device, quick, size, stage, tokenizer), device)
        if "error" in result:  # the model itself did not build or fit
            run.record(f"vljepa_stage{stage}", result, f"train vljepa_stage{stage}  {result['error']}")


# -- (c) decode ------------------------------------------------------------------------------------


def bench_decode(run: Run, device: torch.device, size: dict[str, Any]) -> None:
    """Imports its video libraries itself: where they are missing (a lent GPU machine) the part records
    that and the rest of the run stands."""
    deadline = run.part_deadline("decode")
    if time.monotonic() >= deadline:
        run.record("decode", {"error": f"skipped: {TIME_BUDGET}"}, f"decode  skipped: {TIME_BUDGET}")
        return
    height, width, count = size["video"]
    with tempfile.TemporaryDirectory() as folder:

        def write() -> dict[str, Any]:
            from action100m.video.pattern import moving_square_frames
            from action100m.video.writer import write_video

            frames = moving_square_frames(count, height, width)
            return {"path": str(write_video(Path(folder) / "pattern.mp4", frames, fps=30))}

        written = attempt(write, device)
        if "error" in written:
            run.record("decode", written, f"decode  {written['error']}")
            return
        for decoder in ("cpu", "cuda"):
            if decoder == "cuda" and device.type != "cuda":
                run.record(
                    "decode_cuda", {"error": "skipped: no GPU"}, "decode torchcodec cuda  skipped: no GPU"
                )
                continue
            if time.monotonic() > deadline:
                run.record(f"decode_{decoder}", {"error": "skipped: time budget"})
                continue

            def one(decoder=decoder) -> dict[str, Any]:
                from action100m.video import open_video

                def read() -> None:
                    with open_video(written["path"], backend="torchcodec", device=decoder) as video:
                        video.read_frames(list(range(video.info.num_frames)))

                seconds = timed(read, device, 1, 2)
                return {"frames_per_s": round(count / seconds, 1), "size": f"{width}x{height}"}

            result = attempt(one, device)  # no FFmpeg or no NVDEC support: recorded as its error
            row = f"decode torchcodec {decoder:<5} {width}x{height} " + (
                f"{result['frames_per_s']:8.1f} frames/s" if "error" not in result else result["error"]
            )
            run.record(f"decode_{decoder}", result, row)
            if "error" not in result:
                run.record(f"decode_{decoder}_frames_per_s", result["frames_per_s"])


def result_line(results: dict[str, Any], stages: list[int]) -> str:
    keys = ["vitg_windows_per_s", "vitg_frames_per_s", "vitg_peak_gb", "vitg_batch", "vitg_stopped"]
    for stage in stages:
        keys += [f"vljepa_stage{stage}_{key}" for key in ("samples_per_s", "step_s", "batch", "peak_gb")]
        keys += [f"vljepa_stage{stage}_{c}_stopped" for c in ("nockpt", "ckpt")]
    keys += [k for k in results if k.startswith("decode_") and k.endswith("_frames_per_s")]
    return "RESULT " + " ".join(
        f"{k}={'na' if results.get(k) is None else str(results[k]).replace(' ', '_')}" for k in keys
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes on any device (CI)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--out", type=Path, help=f"results JSON (default {DEFAULT_OUT}; a temp file with --quick)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=270.0,
        help="the whole run's time, model builds included (default 270: it ends inside one 600-s "
        "command with room for the machine's start)",
    )
    parser.add_argument(
        "--tokenizer",
        help="a tokenizer folder for the query and the texts (default: the bundled MiniLM's; "
        "make gpu-bundle copies its tokenizer files without the weights)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and not args.quick:
        print("the real sizes need a CUDA GPU; use --quick for the toy-size run", file=sys.stderr)
        return 2
    tokenizer = args.tokenizer or model_path(MINILM)
    out = args.out or (Path(tempfile.mkdtemp()) / "gpu_paper_presets.json" if args.quick else DEFAULT_OUT)
    transformers.logging.set_verbosity_error()  # weightless checkpoints: every key is "missing"
    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    size = SIZES[args.quick]
    run = Run(out, environment(device, args.quick, args.budget_s), args.budget_s)
    start = time.perf_counter()
    segmentation = attempt(partial(bench_segmentation, run, device, args.quick, size), device)
    if "error" in segmentation:  # the model itself did not build or fit
        run.record("vitg", segmentation, f"segment vitg  {segmentation['error']}")
    bench_training(run, device, args.quick, size, tokenizer)
    bench_decode(run, device, size)
    run.record("total_s", round(time.perf_counter() - start, 1))
    print(f"wrote {out}")
    print(result_line(run.results, list(size["stages"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
