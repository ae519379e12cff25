"""The paper presets at their real sizes on one CUDA GPU, with random weights (no download).

(a) segmentation: V-JEPA 2 ViT-g/16-384 over 64-frame 384² windows, bf16, SDPA, through the
    segmenter's own encode path (data_build.segment.VJEPA2Features), per window batch size;
(b) VL-JEPA (configs/model/vljepa_paper.yaml) training steps (forward, backward, clip, AdamW) under
    bf16 autocast as the trainer's bf16-mixed runs them: 8 frames with the X-encoder frozen (stage 2),
    32 frames unfrozen (stage 3), activation checkpointing off and on, per-GPU batch doubling to OOM;
(c) torchcodec decode of an H.264 file on NVDEC against the CPU.

Every configuration's out-of-memory or error is recorded and the run goes on; the JSON is rewritten
after each one, so a run cut short still leaves its results. `--quick` runs the same code on the CPU
at toy sizes (action100m.models.paper_archs); without a GPU and without --quick it refuses (exit 2).
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
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402
from transformers import VJEPA2Model  # noqa: E402
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
from action100m.video import open_video  # noqa: E402
from action100m.video.pattern import moving_square_frames  # noqa: E402
from action100m.video.writer import write_video  # noqa: E402
from data_build.segment import SegmentConfig, VJEPA2Features  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_paper_presets.json"
CAPTION = (
    "a person in a blue apron slices a red onion on a wooden board, sweeps the pieces into a pan with "
    "the side of the knife and stirs them with a spatula while the oil starts to sizzle"
)

# Real and --quick sizes of everything the run varies.
SIZES = {
    False: dict(
        seg_batches=[1, 2, 4, 8, 16],
        window=64,
        stages=[(8, True), (32, False)],
        max_batch=64,
        warmup=2,
        repeats=3,
        video=(720, 1280, 300),
    ),
    True: dict(
        seg_batches=[1, 2],
        window=8,
        stages=[(4, True), (8, False)],
        max_batch=4,
        warmup=1,
        repeats=2,
        video=(48, 64, 30),
    ),
}


class Run:
    """Results so far, rewritten to `out` after each configuration; a time budget past which the
    remaining configurations are recorded as skipped."""

    def __init__(self, out: Path, environment: dict[str, Any], budget_s: float):
        self.out, self.environment, self.deadline = out, environment, time.monotonic() + budget_s
        self.results: dict[str, Any] = {}
        self.rows: list[str] = []

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def record(self, key: str, value: Any, row: str | None = None) -> None:
        self.results[key] = value
        if row:
            self.rows.append(row)
            print(row, flush=True)
        write_json_atomic(self.out, {"environment": self.environment, "results": self.results})


def environment(device: torch.device, quick: bool) -> dict[str, Any]:
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


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value} GB"  # no peak memory counter on the CPU


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
    """fn()'s result, or {"error": ...}: one configuration's OOM or failure must not end the run."""
    reset_memory(device)
    try:
        return fn()
    except torch.OutOfMemoryError:
        return {"error": "out of memory"}
    except Exception as err:  # noqa: BLE001 - recorded, and the next configuration runs
        return {
            "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        }
    finally:
        reset_memory(device)


# -- (a) segmentation ------------------------------------------------------------------------------


def bench_segmentation(run: Run, device: torch.device, quick: bool, size: dict[str, Any]) -> None:
    config = paper_config(VITG, quick=quick)
    with torch.device(device):
        model = VJEPA2Model(config).to(torch.bfloat16).eval()
    window = size["window"]
    best: dict[str, Any] = {}
    for batch in size["seg_batches"]:
        if run.out_of_time():
            run.record(f"vitg_b{batch}", {"error": "skipped: time budget"})
            continue
        cfg = SegmentConfig(
            model=VITG, window=window, batch_windows=batch, device=str(device), dtype="bfloat16"
        )
        features = VJEPA2Features(cfg, model=model)
        crop = features.crop
        clips = [torch.randint(0, 256, (window, 3, crop, crop), dtype=torch.uint8) for _ in range(batch)]

        def one(features=features, clips=clips, batch=batch) -> dict[str, Any]:
            seconds = timed(lambda: features._encode(clips), device, size["warmup"], size["repeats"])
            return {
                "batch": batch,
                "s_per_batch": round(seconds, 4),
                "windows_per_s": round(batch / seconds, 3),
                "frames_per_s": round(batch * window / seconds, 1),
                "peak_gb": peak_gb(device),
            }

        result = attempt(one, device)
        row = f"segment vitg {window}f {crop}px b{batch:<3} " + (
            f"{result['windows_per_s']:8.2f} windows/s {result['frames_per_s']:9.1f} frames/s "
            f"peak {gb(result['peak_gb'])}"
            if "error" not in result
            else result["error"]
        )
        run.record(f"vitg_b{batch}", result, row)
        if "error" not in result and result["windows_per_s"] > best.get("windows_per_s", 0):
            best = result
        if result.get("error") == "out of memory":
            break
    del model
    if best:
        run.record("vitg_windows_per_s", best["windows_per_s"])
        run.record("vitg_frames_per_s", best["frames_per_s"])
        run.record("vitg_peak_gb", best["peak_gb"])
        run.record("vitg_batch", best["batch"])


# -- (b) VL-JEPA training steps --------------------------------------------------------------------


def paper_vljepa(folder: Path, frames: int, frozen: bool, quick: bool) -> VLJEPA:
    """configs/model/vljepa_paper.yaml with its three models built from weightless checkpoints; the
    query is tokenised with the bundled MiniLM tokenizer (Llama's is gated and only sets token ids)."""
    vitl = write_weightless(paper_config(VITL, quick=quick), folder / "x")
    llama = write_weightless(paper_config(LLAMA_1B, quick=quick), folder / "predictor")
    gemma = write_weightless(paper_config(EMBEDDING_GEMMA, quick=quick), folder / "y")
    SentenceTransformer(model_path(MINILM), device="cpu").tokenizer.save_pretrained(gemma)
    cfg = model_preset("vljepa_paper")
    cfg.num_frames = frames
    cfg.crop_size = paper_config(VITL, quick=quick).crop_size
    cfg.x_encoder.name, cfg.x_encoder.freeze = str(vitl), frozen
    cfg.predictor.name, cfg.predictor.tokenizer = str(llama), MINILM
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


def bench_stage(
    run: Run, device: torch.device, quick: bool, size: dict[str, Any], frames: int, frozen: bool
) -> dict[str, Any]:
    """Batches doubling from 1 until one fails, activation checkpointing off then on, on one model;
    each result is recorded as it comes (the return value: nothing more)."""
    with tempfile.TemporaryDirectory() as folder:
        model = paper_vljepa(Path(folder), frames, frozen, quick).to(device).train()
    optimizer = model.configure_optimizers()["optimizer"]
    crop = model.crop_size
    for ckpt in (False, True):
        set_checkpointing(model, ckpt)
        tag = f"vljepa_{frames}f_{'ckpt' if ckpt else 'nockpt'}"
        batch, fitted = 1, []
        while batch <= size["max_batch"]:
            if run.out_of_time():
                run.record(f"{tag}_b{batch}", {"error": "skipped: time budget"})
                break
            texts = [f"{CAPTION} ({i})" for i in range(batch)]

            def one(batch=batch, texts=texts) -> dict[str, Any]:
                clips = torch.randn(batch, frames, 3, crop, crop, device=device)
                seconds = timed(
                    lambda: train_step(model, optimizer, clips, texts),
                    device,
                    size["warmup"],
                    size["repeats"],
                )
                return {
                    "batch": batch,
                    "step_s": round(seconds, 4),
                    "samples_per_s": round(batch / seconds, 2),
                    "peak_gb": peak_gb(device),
                }

            result = attempt(one, device)
            optimizer.zero_grad(set_to_none=True)  # an OOM mid-backward leaves gradients behind
            row = f"train {tag:<22} b{batch:<3} " + (
                f"{result['step_s']:8.3f} s/step {result['samples_per_s']:8.1f} samples/s "
                f"peak {gb(result['peak_gb'])}"
                if "error" not in result
                else result["error"]
            )
            run.record(f"{tag}_b{batch}", result, row)
            if "error" in result:
                break
            fitted.append(result)
            batch *= 2
        run.record(f"{tag}_max_batch", fitted[-1]["batch"] if fitted else 0)
        # The headline: the first stage (8 frames, frozen X-encoder) as the trainer runs it, unchecked.
        if fitted and frames == size["stages"][0][0] and not ckpt:
            best = fitted[-1]
            run.record(f"vljepa_step_s_b{best['batch']}", best["step_s"])
            run.record("vljepa_peak_gb", best["peak_gb"])
            run.record("max_batch_per_gpu", best["batch"])
    return {}


def bench_training(run: Run, device: torch.device, quick: bool, size: dict[str, Any]) -> None:
    for frames, frozen in size["stages"]:
        if run.out_of_time():
            run.record(f"vljepa_{frames}f", {"error": "skipped: time budget"})
            continue
        result = attempt(partial(bench_stage, run, device, quick, size, frames, frozen), device)
        if "error" in result:  # the model itself did not build or fit
            run.record(f"vljepa_{frames}f", result, f"train vljepa_{frames}f  {result['error']}")


# -- (c) decode ------------------------------------------------------------------------------------


def bench_decode(run: Run, device: torch.device, size: dict[str, Any]) -> None:
    height, width, count = size["video"]
    with tempfile.TemporaryDirectory() as folder:
        path = write_video(Path(folder) / "pattern.mp4", moving_square_frames(count, height, width), fps=30)
        for decoder in ("cpu", "cuda"):
            if decoder == "cuda" and device.type != "cuda":
                run.record(
                    "decode_cuda", {"error": "skipped: no GPU"}, "decode torchcodec cuda  skipped: no GPU"
                )
                continue

            def one(decoder=decoder) -> dict[str, Any]:
                def read() -> None:
                    with open_video(path, backend="torchcodec", device=decoder) as video:
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


def result_line(results: dict[str, Any]) -> str:
    keys = ["vitg_windows_per_s", "vitg_frames_per_s", "vitg_peak_gb"]
    keys += [k for k in results if k.startswith("vljepa_step_s_b")]
    keys += ["vljepa_peak_gb", "max_batch_per_gpu", "vitg_batch"]
    keys += [k for k in results if k.endswith("_max_batch")]
    keys += [k for k in results if k.startswith("decode_") and k.endswith("_frames_per_s")]
    return "RESULT " + " ".join(f"{k}={'na' if results.get(k) is None else results[k]}" for k in keys)


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
        default=420.0,
        help="configurations not started by then are recorded as skipped",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and not args.quick:
        print("the real sizes need a CUDA GPU; use --quick for the toy-size run", file=sys.stderr)
        return 2
    out = args.out or (Path(tempfile.mkdtemp()) / "gpu_paper_presets.json" if args.quick else DEFAULT_OUT)
    transformers.logging.set_verbosity_error()  # weightless checkpoints: every key is "missing"
    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    size = SIZES[args.quick]
    run = Run(out, environment(device, args.quick), args.budget_s)
    start = time.perf_counter()
    bench_segmentation(run, device, args.quick, size)
    bench_training(run, device, args.quick, size)
    bench_decode(run, device, size)
    run.record("total_s", round(time.perf_counter() - start, 1))
    print(f"wrote {out}")
    print(result_line(run.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
