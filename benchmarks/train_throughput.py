"""VL-JEPA training speed with the tiny preset (configs/model/tiny.yaml, 32 px; --crop to change) on a
`build=demo` SynthActions shard set.

lightning_overhead: seconds per training step under the Lightning Trainer (as run_training configures
it, less checkpoints and loggers) over a plain PyTorch loop (zero_grad, forward, loss, backward, clip,
step) on the same model and the same batches. The batches come from the training loader once and are
replayed from memory, so the ratio measures the framework and not the decoder. 1.0 = no overhead.

loader_vs_decode: clips per second of the training stream (tar reading, record parsing, text mix,
shuffle, decoding, preprocessing, batching) over decoding the very same frames of the same nodes alone
(open the mp4 bytes, read the frame indices), both in this one process with one torch thread.

Each pair of measurements is repeated and the median ratio reported: the machine is shared, and a
ratio of two runs made back to back is the figure least disturbed by other work.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from action100m.config import CONFIG_DIR  # noqa: E402
from action100m.models.vljepa import VLJEPA  # noqa: E402
from action100m.synth.generate import generate_dataset  # noqa: E402
from action100m.train.config import register_train_configs  # noqa: E402
from action100m.train.data.module import plan_data  # noqa: E402
from action100m.train.data.stream import NodeSample, NodeStream, StreamLoader  # noqa: E402
from action100m.video import open_video  # noqa: E402
from action100m.video.sampling import uniform_indices  # noqa: E402
from data_build.run import run_build  # noqa: E402


def build_shards(folder: Path, videos: int) -> Path:
    generate_dataset(folder / "synth", videos=videos, seed=0)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "build",
            overrides=[
                f"input={folder / 'synth' / 'manifest.jsonl'}",
                f"output={folder / 'out'}",
                "segment.features=pixel",
                "samples_per_shard=2",
                "progress=false",
            ],
        )
    run_build(OmegaConf.to_object(cfg))
    return folder / "out"


def train_config(shards: Path, batch: int, crop: int):
    """The tiny preset and the CPU trainer, with the demo's text fields."""
    register_train_configs()
    overrides = [
        f"data.shards={shards}",
        f"data.batch_size={batch}",
        f"model.crop_size={crop}",
        "+data.text_fields.action_label=1.0",
        "data.shuffle_buffer=500",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=overrides))


class RecordingStream(NodeStream):
    """The training stream, noting which nodes it decoded."""

    decoded: list[NodeSample] = []

    def decode(self, item: NodeSample) -> torch.Tensor:
        RecordingStream.decoded.append(item)
        return super().decode(item)


def loader_rate(cfg, plan, batches: int) -> tuple[float, list[NodeSample], list[dict]]:
    stream = RecordingStream(
        [str(p) for p in plan.subset.shards], cfg.data, plan.mix, None, 0, batches, seed=0
    )
    RecordingStream.decoded = []
    start = time.perf_counter()
    got = list(StreamLoader(stream, lambda: 0, num_workers=0))
    seconds = time.perf_counter() - start
    return len(got) * cfg.data.batch_size / seconds, list(RecordingStream.decoded), got


def decode_rate(items: list[NodeSample], frames: int) -> float:
    start = time.perf_counter()
    for item in items:
        source = open_video(item.video, name=item.key, num_threads=1)
        info = source.info
        source.read_frames(uniform_indices(item.start, item.end, info.fps, info.num_frames, frames))
        source.close()
    return len(items) / (time.perf_counter() - start)


def plain_seconds(model: VLJEPA, batches: list[dict], clip: float) -> float:
    optimizer = model.configure_optimizers()["optimizer"]
    model.train()
    for index, batch in enumerate(batches):
        if index == 1:  # from the second step, as for Lightning
            start = time.perf_counter()
        optimizer.zero_grad()
        loss, _ = model.loss(model.predict(batch["clips"]), model.y_encoder(batch["texts"]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    return (time.perf_counter() - start) / (len(batches) - 1)


class Replay:
    """The same batches again, as one loader (Lightning reads a plain list as a list of loaders)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class StepClock(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 1:  # from the second step: Lightning's set-up is not a per-step cost
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        self.seconds = (time.perf_counter() - self.start) / (trainer.global_step - 1)


def lightning_seconds(model: VLJEPA, batches: list[dict], clip: float) -> float:
    clock = StepClock()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(batches),
        logger=False,
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=clip,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=Replay(batches))
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=Path, help="a shard set to read (default: build one of --videos)")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=32, help="model.crop_size (the tiny preset's: 32)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="6 videos, 24 steps (for `make bench`)")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.steps = min(args.videos, 6), min(args.steps, 24)
    torch.set_num_threads(1)  # as configs/trainer/cpu.yaml; more threads spin on the cores decoding needs
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards or build_shards(Path(tmp), args.videos)
        cfg = train_config(shards, args.batch, args.crop)
        plan = plan_data(cfg.data)
        loader, decode = [], []
        for _ in range(args.repeats):
            rate, items, batches = loader_rate(cfg, plan, max(4, args.steps // 4))
            loader.append(rate)
            decode.append(decode_rate(items, cfg.data.num_frames))
        _, _, batches = loader_rate(cfg, plan, args.steps)
        clip = cfg.trainer.gradient_clip_val
        plain, lightning = [], []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            plain.append(plain_seconds(VLJEPA(cfg.model, cfg.optim), batches, clip))
            torch.manual_seed(0)
            lightning.append(lightning_seconds(VLJEPA(cfg.model, cfg.optim), batches, clip))
    print(
        f"data: {len(plan.subset.shards)} shards, {plan.subset.videos} videos, {plan.scan.samples} samples; "
        f"batch {args.batch}, {cfg.data.num_frames} frames at {cfg.data.crop_size}px"
    )
    print(
        f"loader: {median(loader):.1f} clips/s (one process); decoding the same frames alone: "
        f"{median(decode):.1f} clips/s"
    )
    print(
        f"train step: plain PyTorch {1000 * median(plain):.1f} ms ({args.batch / median(plain):.0f} samples/s), "
        f"Lightning {1000 * median(lightning):.1f} ms ({args.batch / median(lightning):.0f} samples/s)"
    )
    # each ratio from two measurements made back to back, the median over repeats: slow changes in the
    # machine's load cancel out
    overhead = median([t / p for t, p in zip(lightning, plain, strict=True)])
    loader_vs_decode = median([a / b for a, b in zip(loader, decode, strict=True)])
    print(f"RESULT lightning_overhead={overhead:.3f} loader_vs_decode={loader_vs_decode:.2f}")


if __name__ == "__main__":
    main()
