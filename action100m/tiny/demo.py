"""`make demo`: the main job end to end on a CPU, with nothing to download.

SynthActions videos → `data_build/build.py build=demo` (tiny V-JEPA 2 segmentation, the ground-truth
describer standing in for the captioning VLMs, direct pseudo-label annotations standing in for the
LLM) → `train.py -m experiment=demo` at nested data scales → `eval.py zero_shot=synth` on held-out
verb × object compositions for each checkpoint → the scaling report. Each step runs as its own
command, the one a user would type; everything lands under `out`, with `summary.json` and `README.md`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from action100m.errors import Action100MError
from action100m.report.scaling import read_results
from action100m.synth.generate import generate_dataset
from action100m.utils.atomic import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]  # the checkout: its scripts run from there
TARGET_MINUTES = 15
TARGET_TIMES_CHANCE = 5
# Where the offline W&B runs land: each beside what it logged.
WANDB_RUN_GLOBS = ("train/*/wandb/offline-run-*", "eval/wandb/offline-run-*", "report/wandb/offline-run-*")


class DemoError(Action100MError):
    """A step of the demo failed; the message names the step and where its log is."""


def _run(step: str, command: list[str], log: Path, env: dict[str, str]) -> float:
    """Run one step's command with its output in `log`; returns its seconds."""
    print(f"[demo] {step}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-15:])
        raise DemoError(f"{step} failed (exit {done.returncode}); its log: {log}\n{tail}")
    print(f"[demo] {step}: done in {seconds:.0f} s (log: {log})", flush=True)
    return seconds


def _train_runs(train_dir: Path) -> list[dict[str, Any]]:
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in train_dir.glob("*/run.json")]
    return sorted(runs, key=lambda run: run["data"]["scale"])


def run_demo(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole main job; writes `<out>/summary.json` and returns it."""
    started = time.perf_counter()
    out = Path(cfg.out).resolve()
    if out.exists():
        shutil.rmtree(out)  # a demo starts clean: every figure it prints comes from this run
    logs = out / "logs"
    logs.mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "PYTHONUNBUFFERED": "1"}
    python = sys.executable
    seconds: dict[str, float] = {}

    print(
        f"[demo] SynthActions: {cfg.videos} videos, {cfg.benchmark_clips} held-out benchmark clips",
        flush=True,
    )
    step_start = time.perf_counter()
    synth = generate_dataset(
        out / "synth", videos=cfg.videos, seed=cfg.seed, benchmark_clips=cfg.benchmark_clips
    )
    seconds["synth"] = time.perf_counter() - step_start

    build_dir = out / "build"
    seconds["build"] = _run(
        "build",
        [
            python,
            "data_build/build.py",
            f"input={out / 'synth' / 'manifest.jsonl'}",
            f"output={build_dir}",
            "build=demo",
            "progress=false",
            *cfg.build_overrides,
        ],
        logs / "build.log",
        env,
    )
    build_stats = json.loads((build_dir / "stats.json").read_text(encoding="utf-8"))

    scales = ",".join(f"{scale:g}" for scale in cfg.scales)
    seconds["train"] = _run(
        "train",
        [
            python,
            "train.py",
            "-m",
            "experiment=demo",
            f"data.shards={build_dir}",
            f"data.scale={scales}",
            f"output_dir={out / 'train'}",
            f"seed={cfg.seed}",
            f"logger.project={cfg.wandb_project}",
            *cfg.train_overrides,
        ],
        logs / "train.log",
        env,
    )
    runs = _train_runs(out / "train")
    if len(runs) != len(cfg.scales):
        raise DemoError(f"expected {len(cfg.scales)} training runs under {out / 'train'}, found {len(runs)}")

    seconds["eval"] = 0.0
    for run in runs:
        scale = run["data"]["scale"]
        seconds["eval"] += _run(
            f"eval scale {scale:g}",
            [
                python,
                "eval.py",
                "zero_shot=synth",
                f"checkpoint={run['last_checkpoint']}",
                f"zero_shot.root={out / 'synth' / 'benchmark'}",
                f"output_dir={out / 'eval'}",
                "logger.wandb.enabled=true",
                f"logger.wandb.project={cfg.wandb_project}",
                *cfg.eval_overrides,
            ],
            logs / f"eval-{scale:g}.log",
            env,
        )
    seconds["report"] = _run(
        "report",
        [
            python,
            "-m",
            "action100m.cli",
            "report",
            "scaling",
            "--runs",
            str(out / "eval"),
            "--out",
            str(out / "report"),
            "--wandb-project",
            cfg.wandb_project,
        ],
        logs / "report.log",
        env,
    )
    minutes = (time.perf_counter() - started) / 60
    return _summarise(out, cfg, synth, build_stats, minutes, seconds)


def _summarise(
    out: Path, cfg: DictConfig, synth: dict, build_stats: dict, minutes: float, seconds: dict[str, float]
) -> dict[str, Any]:
    chance = 1.0 / synth["held_out_classes"]
    results = {r["train"]["scale"]: r for r in read_results(out / "eval") if r["benchmark"] == "synth"}
    if sorted(results) != sorted(cfg.scales):
        raise DemoError(
            f"expected synth results for scales {list(cfg.scales)} under {out / 'eval'}, "
            f"found {sorted(results)}"
        )
    scales = [
        {
            "scale": scale,
            "samples_seen": r["train"]["samples_seen"],
            "shards": r["train"]["shards"],
            "training_samples": r["train"]["samples"],
            "top1": r["metrics"]["top1"],
            "top5": r["metrics"].get("top5"),
            "mean_class": r["metrics"].get("mean_class"),
        }
        for scale, r in sorted(results.items())
    ]
    top1 = [s["top1"] for s in scales]
    targets = {
        f"minutes <= {TARGET_MINUTES}": minutes <= TARGET_MINUTES,
        "top-1 rises with data scale": all(b > a for a, b in zip(top1, top1[1:], strict=False)),
        f"largest scale >= {TARGET_TIMES_CHANCE}x chance": top1[-1] >= TARGET_TIMES_CHANCE * chance,
    }
    offline_runs = sorted(str(p.relative_to(out)) for pattern in WANDB_RUN_GLOBS for p in out.glob(pattern))
    summary = {
        "minutes": round(minutes, 2),
        "chance": chance,
        "boundary_f1": build_stats.get("boundary_f1"),
        "scales": scales,
        "targets": targets,
        "step_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "build": {k: build_stats.get(k) for k in ("samples", "nodes", "annotated_nodes", "failures")},
        "wandb": {"project": cfg.wandb_project, "offline_runs": offline_runs},
    }
    write_json_atomic(out / "summary.json", summary)
    lines = [
        "| scale | shards | training samples | samples seen | top-1 | top-5 |",
        "|---|---|---|---|---|---|",
    ]
    for s in scales:
        top5 = f"{100 * s['top5']:.1f}%" if s["top5"] is not None else "—"
        lines.append(
            f"| {s['scale']:g} | {s['shards']} | {s['training_samples']} | {s['samples_seen']} | "
            f"{100 * s['top1']:.1f}% | {top5} |"
        )
    table = "\n".join(lines)
    verdicts = "\n".join(f"- {name}: {'met' if ok else 'MISSED'}" for name, ok in targets.items())
    text = (
        f"# Action100M demo\n\nZero-shot top-1 on {synth['held_out_classes']} held-out SynthActions "
        f"compositions (chance {100 * chance:.1f}%), one tiny VL-JEPA per data scale:\n\n{table}\n\n"
        f"Segmentation boundary F1 (±0.5 s): {summary['boundary_f1']}\n\nTargets:\n{verdicts}\n\n"
        f"Finished in {minutes:.1f} minutes. Stand-ins: tiny random-init V-JEPA 2 (segmentation and "
        f"X-encoder), SynthActions' ground-truth describer (captions), direct pseudo-labels (no LLM).\n"
        f"Files: build/ (shards), train/ (checkpoints and their W&B runs), eval/ (result JSONs), report/ "
        f"(scaling curve [scaling.png](report/scaling.png), table [scaling.md](report/scaling.md)), logs/.\n\n"
        f"W&B: {len(offline_runs)} offline runs in project {cfg.wandb_project}. To see them online, with "
        f"WANDB_API_KEY set: `cd {out} && wandb sync {' '.join(WANDB_RUN_GLOBS)}`, then "
        f"`action100m report scaling --wandb-project {cfg.wandb_project} --out report-wandb` for the W&B Report.\n"
    )
    write_text_atomic(out / "README.md", text)
    print("\n" + text)
    return summary
