"""`make demo`: the main job end to end on a CPU, with nothing to download.

SynthActions videos → `data_build/build.py build=demo` (tiny V-JEPA 2 segmentation, the ground-truth
describer standing in for the captioning VLMs, direct pseudo-label annotations standing in for the
LLM) → `train.py -m experiment=demo` at nested data scales, three training seeds each → `eval.py` on
the validation split's held-out verb × object compositions, then once on the test split's (disjoint
from it and from training), every checkpoint in one command → the scaling report, mean ± std over
seeds. Each step runs as its own command, the one a user would type; everything lands under `out`,
with `summary.json` and `README.md`.
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

import numpy as np
from omegaconf import DictConfig

from action100m.errors import Action100MError
from action100m.report.scaling import read_results
from action100m.synth.generate import generate_dataset
from action100m.utils.atomic import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]  # the checkout: its scripts run from there
TARGET_MINUTES = 15
FLOOR_TIMES_CHANCE = 6  # the largest scale, on every training seed
GOAL_TIMES_CHANCE = 8  # the largest scale, in the mean over seeds
VALIDATION_METRIC = "zero_shot/synth_validation/top1"
# Where the offline W&B runs land: each beside what it logged.
WANDB_RUN_GLOBS = (
    "train/*/wandb/offline-run-*",
    "eval/wandb/offline-run-*",
    "validation/wandb/offline-run-*",
    "report/wandb/offline-run-*",
)


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


def _run_at_once(jobs: list[tuple[str, list[str], Path]], at_once: int, env: dict[str, str]) -> float:
    """Run the (step, command, log) jobs, `at_once` at a time, in order; the first failure stops the
    others and raises. Returns the seconds they took together."""
    started = time.perf_counter()
    pending, running = list(jobs), []
    try:
        while pending or running:
            while pending and len(running) < at_once:
                step, command, log = pending.pop(0)
                print(f"[demo] {step}: {' '.join(command)}", flush=True)
                handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed when the job ends
                process = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
                )
                running.append((step, log, handle, process, time.perf_counter()))
            time.sleep(0.2)
            for job in [job for job in running if job[3].poll() is not None]:
                step, log, handle, process, begun = job
                running.remove(job)
                handle.close()
                if process.returncode != 0:
                    tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-15:])
                    raise DemoError(f"{step} failed (exit {process.returncode}); its log: {log}\n{tail}")
                print(f"[demo] {step}: done in {time.perf_counter() - begun:.0f} s (log: {log})", flush=True)
    finally:
        for _, _, handle, process, _ in running:
            process.terminate()
            process.wait()
            handle.close()
    return time.perf_counter() - started


def _train_runs(train_dir: Path) -> list[dict[str, Any]]:
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in train_dir.glob("*/run.json")]
    return sorted(runs, key=lambda run: (run["data"]["scale"], run["identity"]["seed"]))


def _validation_overrides(cfg: DictConfig, out: Path) -> list[str]:
    """train.py's overrides for zero-shot validation on the whole validation split while training."""
    if not cfg.validate_every:
        return []
    return [
        "zero_shot.benchmark=synth_validation",
        f"zero_shot.root={out / 'synth' / 'validation'}",
        f"zero_shot.every_n_steps={cfg.validate_every}",
        f"zero_shot.max_clips={cfg.validation_clips}",
        f"checkpoint.monitor={VALIDATION_METRIC}",
        "checkpoint.mode=max",
    ]


def _scored_checkpoint(run: dict[str, Any]) -> str:
    """The checkpoint the splits score: the best by validation top-1 during training, else the last."""
    return run.get("best_checkpoint") or run["last_checkpoint"]


def _listed(values: Any) -> str:
    """A Hydra override value: the list [a,b,c] for a sweep, as `key=a,b,c` takes it."""
    return ",".join(f"{value:g}" if isinstance(value, float) else str(value) for value in values)


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
        f"[demo] SynthActions: {cfg.videos} videos, {cfg.validation_clips} validation and "
        f"{cfg.benchmark_clips} test clips of held-out compositions",
        flush=True,
    )
    step_start = time.perf_counter()
    synth = generate_dataset(
        out / "synth",
        videos=cfg.videos,
        seed=cfg.seed,
        benchmark_clips=cfg.benchmark_clips,
        validation_clips=cfg.validation_clips,
        workers=os.cpu_count() or 1,
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

    jobs = [
        (
            f"train scale {scale:g} seed {seed}",
            [
                python,
                "train.py",
                "experiment=demo",
                f"data.shards={build_dir}",
                f"data.scale={scale:g}",
                f"seed={seed}",
                f"output_dir={out / 'train'}",
                f"logger.project={cfg.wandb_project}",
                *_validation_overrides(cfg, out),
                *cfg.train_overrides,
            ],
            logs / f"train-{scale:g}-seed{seed}.log",
        )
        for scale in cfg.scales
        for seed in cfg.train_seeds
    ]
    seconds["train"] = _run_at_once(jobs, cfg.parallel_runs, env)
    runs = _train_runs(out / "train")
    expected = len(cfg.scales) * len(cfg.train_seeds)
    if len(runs) != expected:
        raise DemoError(f"expected {expected} training runs under {out / 'train'}, found {len(runs)}")

    # Every checkpoint is scored by one command per split, on clips decoded once: first validation,
    # then the test split, once.
    checkpoints = "checkpoints=[" + ",".join(f"'{_scored_checkpoint(run)}'" for run in runs) + "]"
    seconds["eval"] = 0.0
    for split, benchmark, folder in (
        ("validation", "synth_validation", "validation"),
        ("test", "synth", "benchmark"),
    ):
        seconds["eval"] += _run(
            f"eval {split}",
            [
                python,
                "eval.py",
                f"zero_shot={benchmark}",
                checkpoints,
                f"zero_shot.root={out / 'synth' / folder}",
                f"output_dir={out / ('eval' if split == 'test' else 'validation')}",
                "progress=false",
                "logger.wandb.enabled=true",
                f"logger.wandb.project={cfg.wandb_project}",
                *cfg.eval_overrides,
            ],
            logs / f"eval-{split}.log",
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
            # the runs share one budget but keep their best checkpoint by validation, at any step
            "--x",
            "dataset_size",
            "--wandb-project",
            cfg.wandb_project,
        ],
        logs / "report.log",
        env,
    )
    minutes = (time.perf_counter() - started) / 60
    return _summarise(out, cfg, synth, build_stats, minutes, seconds)


def _per_scale(results: list[dict], benchmark: str, cfg: DictConfig, folder: Path) -> list[dict[str, Any]]:
    """Per scale: the figures of every seed, in seed order, and their mean and std."""
    found: dict[float, dict[int, dict]] = {}
    for r in results:
        if r["benchmark"] == benchmark:
            found.setdefault(r["train"]["scale"], {})[r["train"]["seed"]] = r
    wanted = {float(scale): sorted(int(seed) for seed in cfg.train_seeds) for scale in cfg.scales}
    got = {scale: sorted(seeds) for scale, seeds in found.items()}
    if got != wanted:
        raise DemoError(
            f"expected {benchmark} results for scales x seeds {wanted} under {folder}, found {got}"
        )
    scales = []
    for scale in sorted(found):
        by_seed = [found[scale][seed] for seed in sorted(found[scale])]
        first = by_seed[0]["train"]
        top1 = [r["metrics"]["top1"] for r in by_seed]
        top5 = [r["metrics"].get("top5") for r in by_seed]
        scales.append(
            {
                "scale": scale,
                # at each run's kept checkpoint: the mean over seeds
                "samples_seen": float(np.mean([r["train"]["samples_seen"] for r in by_seed])),
                "shards": first["shards"],
                "training_samples": first["samples"],
                "seeds": sorted(found[scale]),
                "top1": float(np.mean(top1)),
                "top1_std": float(np.std(top1)),
                "top1_seeds": top1,
                "top5": float(np.mean(top5)) if None not in top5 else None,
                "top5_seeds": top5,
            }
        )
    return scales


def _selection(runs: list[dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Which checkpoint of each run was scored, and what validating while training cost."""
    if not cfg.validate_every:
        return {"by": None, "text": "Each run's last checkpoint is scored."}
    scored = [run["zero_shot"] for run in runs]
    seconds = sum(z["seconds"] for z in scored)
    training = sum(z["train_seconds"] or 0.0 for z in scored)
    steps = [int(Path(_scored_checkpoint(run)).stem.rsplit("-", 1)[-1]) for run in runs]
    text = (
        f"Each run scored the whole validation split every {cfg.validate_every} steps while it trained "
        f"({seconds:.0f} s of its {training:.0f} s of training in all, {100 * seconds / max(training, 1e-9):.1f}%) "
        f"and kept its checkpoint with the best validation top-1, which both splits then score (so the "
        f"validation column is the selected score; the test split chose nothing). Steps kept, by scale "
        f"and seed: {', '.join(map(str, steps))}."
    )
    return {
        "by": VALIDATION_METRIC,
        "every_n_steps": cfg.validate_every,
        "steps": steps,
        "validation_seconds": round(seconds, 1),
        "training_seconds": round(training, 1),
        "text": text,
    }


def _percent(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.1f}%" + (f" ± {100 * std:.1f}" if std is not None else "")


def _summarise(
    out: Path, cfg: DictConfig, synth: dict, build_stats: dict, minutes: float, seconds: dict[str, float]
) -> dict[str, Any]:
    chance = 1.0 / synth["held_out_classes"]
    scales = _per_scale(read_results(out / "eval"), "synth", cfg, out / "eval")
    validation = _per_scale(read_results(out / "validation"), "synth_validation", cfg, out / "validation")
    means = [s["top1"] for s in scales]
    largest = scales[-1]
    targets = {
        f"minutes <= {TARGET_MINUTES}": minutes <= TARGET_MINUTES,
        "mean top-1 rises with data scale": all(b > a for a, b in zip(means, means[1:], strict=False)),
        f"largest scale >= {FLOOR_TIMES_CHANCE}x chance on every seed (floor)": min(largest["top1_seeds"])
        >= FLOOR_TIMES_CHANCE * chance,
        f"largest scale >= {GOAL_TIMES_CHANCE}x chance in the mean (goal)": largest["top1"]
        >= GOAL_TIMES_CHANCE * chance,
    }
    offline_runs = sorted(str(p.relative_to(out)) for pattern in WANDB_RUN_GLOBS for p in out.glob(pattern))
    selection = _selection(_train_runs(out / "train"), cfg)
    summary = {
        "minutes": round(minutes, 2),
        "chance": chance,
        "boundary_f1": build_stats.get("boundary_f1"),
        "train_seeds": list(cfg.train_seeds),
        "scales": scales,
        "validation": {
            "classes": synth["validation_classes"],
            "chance": 1.0 / synth["validation_classes"],
            "scales": validation,
        },
        "targets": targets,
        "checkpoint_selection": selection,
        "step_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "build": {k: build_stats.get(k) for k in ("samples", "nodes", "annotated_nodes", "failures")},
        "wandb": {"project": cfg.wandb_project, "offline_runs": offline_runs},
    }
    write_json_atomic(out / "summary.json", summary)
    seeds = len(cfg.train_seeds)
    lines = [
        f"| scale | shards | training samples | samples seen | test top-1 (mean ± std of {seeds}) | "
        "per seed | test top-5 | validation top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s, v in zip(scales, validation, strict=True):
        per_seed = " / ".join(f"{100 * x:.1f}" for x in s["top1_seeds"])
        lines.append(
            f"| {s['scale']:g} | {s['shards']} | {s['training_samples']} | {s['samples_seen']:,.0f} | "
            f"{_percent(s['top1'], s['top1_std'])} | {per_seed} | {_percent(s['top5'])} | "
            f"{_percent(v['top1'], v['top1_std'])} |"
        )
    table = "\n".join(lines)
    verdicts = "\n".join(f"- {name}: {'met' if ok else 'MISSED'}" for name, ok in targets.items())
    text = (
        f"# Action100M demo\n\nZero-shot top-1 on the test split, {synth['held_out_classes']} held-out "
        f"SynthActions compositions (chance {100 * chance:.1f}%; {FLOOR_TIMES_CHANCE}x = "
        f"{100 * FLOOR_TIMES_CHANCE * chance:.1f}%, {GOAL_TIMES_CHANCE}x = {100 * GOAL_TIMES_CHANCE * chance:.1f}%), "
        f"a tiny VL-JEPA per data scale and training seed (seeds {list(cfg.train_seeds)}); the validation "
        f"split's {synth['validation_classes']} other held-out compositions, on which the preset was "
        f"chosen, beside it:\n\n{table}\n\n"
        f"{selection['text']}\n\n"
        f"Segmentation boundary F1 (±0.5 s): {summary['boundary_f1']}\n\nTargets:\n{verdicts}\n\n"
        f"Finished in {minutes:.1f} minutes. Stand-ins: tiny random-init V-JEPA 2 (segmentation and "
        f"X-encoder), SynthActions' ground-truth describer (captions), direct pseudo-labels (no LLM).\n"
        f"Files: build/ (shards), train/ (checkpoints and their W&B runs), validation/ and eval/ (result "
        f"JSONs of the two splits), report/ (the test split's scaling curve with error bars over seeds "
        f"[scaling.png](report/scaling.png), table [scaling.md](report/scaling.md)), logs/.\n\n"
        f"W&B: {len(offline_runs)} offline runs in project {cfg.wandb_project}. To see them online, with "
        f"WANDB_API_KEY set: `cd {out} && wandb sync {' '.join(WANDB_RUN_GLOBS)}`, then "
        f"`action100m report scaling --wandb-project {cfg.wandb_project} --out report-wandb` for the W&B Report.\n"
    )
    write_text_atomic(out / "README.md", text)
    print("\n" + text)
    return summary
