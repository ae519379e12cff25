"""Kill reliability: SIGKILL (and SIGTERM, where the program handles it) the build, the official import,
training, eval and the scaling report at seeded points in their running window, rerun the same command to
completion, and compare with an uninterrupted run.

Each program runs once uninterrupted first (its reference, which also measures its running window: from
its first output file to its exit, the part after start-up where it writes). Each kill point then starts
the same command on a fresh output folder and kills its process group a seeded delay after that run's own
first output file, the delay drawn within the window's length (training also right after a checkpoint's
temp file appears, i.e. inside a save); it checks what the killed run left under final names, reruns it
and compares:

- build, import: every byte under shards/ plus sizes.json, failures.jsonl and stats.json, the latter
  without `built`, `skipped`, `seconds` and `stage_seconds` (what this invocation did and how long it
  took: a rerun skips what the killed run finished);
- training (`ckpt_path=last` in every run, so the rerun is the same command): the final global step,
  samples seen, weights and Adam state equal the straight run's within 1e-6 (float summation order);
- eval: result.json and left_out.jsonl, with the output folder's path written as <OUT> and without
  `seconds` and `created` (wall time and clock) and `text_embeddings.cache_hit`/`texts_encoded` (a rerun
  may reuse the cache the killed run wrote: that is the cache working, not a different result);
- report: scaling.json, scaling.md and scaling.png bytes.

Afterwards no temp file (`.<name>.*.tmp`, the project's atomic-write naming, or any *.tmp, .tmp*, *partial*,
*.part) and no file the reference does not have (Lightning's per-attempt csv/version_N logs aside) may be
left. Only training handles SIGTERM (Lightning stops at the next step boundary); the others die of it as of
SIGKILL, so they get SIGKILL only. SLURM's USR1 requeue needs `scontrol` and is covered by
tests/train/test_run.py and `make cluster-smoke`.

    python benchmarks/faults/kill.py --quick [--points 20] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
CLI = [PYTHON, "-m", "action100m.cli"]
POLL_S = 0.005  # a tiny model's checkpoint save takes ~0.2 s: polling this often sees its temp file
# Kill points per program out of 20; more points are spread in the same proportions.
SHARE = {"build": 5, "import": 6, "train": 4, "eval": 2, "report": 3}  # eval and train cost the most
# Training's points in turn: inside a checkpoint save or after a delay, by SIGKILL or SIGTERM.
TRAIN_KINDS = [
    (signal.SIGKILL, True),
    (signal.SIGKILL, False),
    (signal.SIGTERM, True),
    (signal.SIGTERM, False),
    (signal.SIGKILL, True),
]
TEMP_PATTERNS = ("*.tmp", ".tmp*", "*partial*", "*.part")
EVAL_RUN_SPECIFIC = ("seconds", "created")
EVAL_CACHE_SPECIFIC = ("cache_hit", "texts_encoded")
STATS_RUN_SPECIFIC = ("built", "skipped", "seconds", "stage_seconds")


@dataclass(frozen=True)
class Sizes:
    videos: int
    steps: int
    every: int  # checkpoint.every_n_steps: with steps not a multiple, the final last.ckpt save runs too


QUICK = Sizes(videos=4, steps=3, every=2)
FULL = Sizes(videos=8, steps=6, every=2)


@dataclass
class Program:
    command: Callable[[Path], list[str]]
    compare: Callable[[Path, Path], list[str]]  # reference, output -> mismatches
    after_kill: Callable[[Path, Path], list[str]]  # reference, killed output -> untrustworthy files
    window: tuple[float, float] = (0.0, 0.0)
    seconds: float = 0.0


@dataclass
class KillPoint:
    program: str
    sig: signal.Signals
    delay: float | None  # seconds after the run's first output file; None: in the save_index-th save
    save_index: int = 0
    save_offset: float = 0.0  # seconds after the save's temp file appears
    at: float = 0.0
    in_save: bool = False
    outcome: str = ""
    problems: list[str] = field(default_factory=list)


class Failed(Exception):
    """A command that should have completed did not."""


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def _stop_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _bounded_wait(process: subprocess.Popen, timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(process, signal.SIGKILL)
        process.wait()
        raise


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    # its own process group, so a kill takes any child (loader, decoder) with it, as a node failure would
    with open(log, "ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=_env(), cwd=log.parent, start_new_session=True
        )


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def run_to_end(
    argv: list[str], log: Path, timeout: float, watch: Path | None = None
) -> tuple[float | None, float]:
    """Run to completion; returns (seconds until the first file under `watch`, total seconds)."""
    started = time.monotonic()
    process = _start(argv, log)
    first = None
    deadline = started + timeout
    while process.poll() is None:
        if watch is not None and first is None and _has_files(watch):
            first = time.monotonic() - started
        if time.monotonic() > deadline:
            _stop_group(process, signal.SIGKILL)
            process.wait()
            raise Failed(f"{argv[1]}: over {timeout:.0f} s (log {log})")
        time.sleep(0.02)
    if process.returncode != 0:
        raise Failed(
            f"exit {process.returncode}: {log.read_text(errors='replace').strip().splitlines()[-1:]}"
        )
    return first, time.monotonic() - started


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/checkpoints/.*.tmp"))


def kill_once(program: Program, point: KillPoint, out: Path, log: Path, timeout: float) -> bool:
    """Start the program and kill it at `point`; False if it ended first (nothing was interrupted)."""
    started = time.monotonic()
    process = _start(program.command(out), log)
    seen: set[Path] = set()
    first = None
    while process.poll() is None:
        now = time.monotonic() - started
        if now > timeout:
            break
        if first is None and _has_files(out):
            first = now
        if point.delay is not None and first is not None and now >= first + point.delay:
            break
        if point.delay is None:
            seen.update(_temps(out))
            if len(seen) >= point.save_index:
                time.sleep(point.save_offset)
                break
        time.sleep(POLL_S)
    point.in_save = bool(_temps(out))
    point.at = time.monotonic() - started
    if process.poll() is not None:
        return False
    _stop_group(process, point.sig)
    if point.sig == signal.SIGTERM:
        try:
            _bounded_wait(process, timeout)
        except subprocess.TimeoutExpired:
            point.problems.append(f"{point.program}: SIGTERM not handled within {timeout:.0f} s")
    else:
        process.wait()
    _stop_group(process, signal.SIGKILL)  # nothing of the killed run may outlive it
    return True


def leftovers(reference: Path, out: Path, ignore: Callable[[Path], bool]) -> list[str]:
    found = {p for pattern in TEMP_PATTERNS for p in out.rglob(pattern)}
    expected = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file()}
    found |= {p for p in out.rglob("*") if p.is_file() and p.relative_to(out) not in expected}
    return sorted(str(p) for p in found if not ignore(p.relative_to(out)))


def _same_bytes(reference: Path, out: Path, names: list[str]) -> list[str]:
    problems = []
    for name in names:
        a, b = reference / name, out / name
        if not b.is_file():
            problems.append(f"{name} missing")
        elif a.read_bytes() != b.read_bytes():
            problems.append(f"{name} differs")
    return problems


def _stats(path: Path) -> dict[str, Any]:
    stats = json.loads(path.read_text())
    return {key: value for key, value in stats.items() if key not in STATS_RUN_SPECIFIC}


def compare_shards(reference: Path, out: Path) -> list[str]:
    names = sorted(str(p.relative_to(reference)) for p in (reference / "shards").iterdir())
    extra = sorted({p.name for p in (out / "shards").iterdir()} - {Path(n).name for n in names})
    problems = _same_bytes(reference, out, [*names, "sizes.json", "failures.jsonl"])
    problems += [f"shards/{name} not in the reference" for name in extra]
    if not (out / "stats.json").is_file():
        problems.append("stats.json missing")
    elif _stats(reference / "stats.json") != _stats(out / "stats.json"):
        problems.append("stats.json differs (run-specific counts and times aside)")
    return problems


def finished_shards_whole(reference: Path, out: Path) -> list[str]:
    """A shard with its marker is what a rerun skips: it must already be the final bytes."""
    names = [f"shards/{p.name}" for p in (out / "shards").glob("*.tar") if Path(f"{p}.done").is_file()]
    return _same_bytes(reference, out, names)


def compare_training(reference: Path, out: Path) -> list[str]:
    import torch

    from tests.train.test_run import optimizer_state  # the exact-resume test's reading of a checkpoint

    [ref_ckpt] = reference.glob("*/checkpoints/last.ckpt")
    ckpt = out / ref_ckpt.relative_to(reference)
    if not ckpt.is_file():
        return [f"{ckpt.relative_to(out)} missing"]
    step_a, seen_a, optim_a, weights_a = optimizer_state(ref_ckpt)
    step_b, seen_b, optim_b, weights_b = optimizer_state(ckpt)
    problems = []
    if (step_a, seen_a) != (step_b, seen_b):
        problems.append(f"ended at step {step_b}, {seen_b} samples (straight: {step_a}, {seen_a})")
    for key, state in optim_a["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            if not torch.allclose(state[name], optim_b["state"][key][name], atol=1e-6):
                problems.append(f"optimizer state {key}.{name} differs")
    problems += [
        f"weight {k} differs" for k in weights_a if not torch.allclose(weights_a[k], weights_b[k], atol=1e-6)
    ]
    return problems


def checkpoints_load(reference: Path, out: Path) -> list[str]:
    """Any checkpoint under its final name is one `ckpt_path=last` may resume from: it must load."""
    import torch

    problems = []
    for path in sorted(out.glob("*/checkpoints/*.ckpt")):
        try:
            torch.load(path, weights_only=True)
        except Exception as err:  # any failure to load is the finding
            problems.append(f"{path.relative_to(out)} does not load: {type(err).__name__}")
    return problems


def _eval_result(path: Path, out: Path) -> Any:
    result = json.loads(path.read_text().replace(str(out), "<OUT>"))
    for key in EVAL_RUN_SPECIFIC:
        result.pop(key, None)
    for key in EVAL_CACHE_SPECIFIC:
        result.get("text_embeddings", {}).pop(key, None)
    return result


def compare_eval(reference: Path, out: Path) -> list[str]:
    problems = []
    for ref in sorted(reference.rglob("result.json")):
        got = out / ref.relative_to(reference)
        if not got.is_file():
            problems.append(f"{got.relative_to(out)} missing")
        elif _eval_result(ref, reference) != _eval_result(got, out):
            problems.append(f"{got.relative_to(out)} differs")
    names = [str(p.relative_to(reference)) for p in reference.rglob("left_out.jsonl")]
    return problems + _same_bytes(reference, out, names)


def eval_result_whole(reference: Path, out: Path) -> list[str]:
    return [p for p in compare_eval(reference, out) if not p.endswith("missing")]


REPORT_FILES = ["scaling.json", "scaling.md", "scaling.png"]


def compare_report(reference: Path, out: Path) -> list[str]:
    return _same_bytes(reference, out, REPORT_FILES)


def report_files_whole(reference: Path, out: Path) -> list[str]:
    return _same_bytes(reference, out, [name for name in REPORT_FILES if (out / name).exists()])


def programs(work: Path, sizes: Sizes) -> dict[str, Program]:
    synth, ref = work / "synth", work / "reference"
    train = [
        "model=tiny",
        f"trainer.max_steps={sizes.steps}",
        f"checkpoint.every_n_steps={sizes.every}",
        "logger=csv",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.epoch_batches=4",
        "data.shuffle_buffer=20",
        "ckpt_path=last",
    ]
    return {
        "build": Program(
            lambda out: [
                PYTHON,
                str(ROOT / "data_build" / "build.py"),
                f"input={synth / 'manifest.jsonl'}",
                f"output={out}",
                "build=demo",
                "segment.features=pixel",  # V-JEPA 2 features take 3x as long; resuming works alike
                "samples_per_shard=1",
                "progress=false",
            ],
            compare_shards,
            finished_shards_whole,
        ),
        "import": Program(
            lambda out: [
                *CLI,
                "official",
                "import",
                "--annotations",
                str(work / "release.json"),
                "--videos",
                str(synth / "videos"),
                "--out",
                str(out),
                "--samples-per-shard",
                "1",
            ],
            compare_shards,
            finished_shards_whole,
        ),
        "train": Program(
            lambda out: [
                PYTHON,
                str(ROOT / "train.py"),
                f"data.shards={ref / 'build'}",
                f"output_dir={out}",
                *train,
            ],
            compare_training,
            checkpoints_load,
        ),
        "eval": Program(
            lambda out: [
                PYTHON,
                str(ROOT / "eval.py"),
                "zero_shot=synth",
                f"checkpoint={next((ref / 'train').glob('*/checkpoints/last.ckpt'))}",
                f"zero_shot.root={synth / 'benchmark'}",
                f"output_dir={out}",
                f"cache_dir={out / 'cache'}",
                "progress=false",
                "workers=0",
            ],
            compare_eval,
            eval_result_whole,
        ),
        "report": Program(
            lambda out: [*CLI, "report", "scaling", "--runs", str(ref / "eval"), "--out", str(out)],
            compare_report,
            report_files_whole,
        ),
    }


def prepare(work: Path, sizes: Sizes, timeout: float) -> dict[str, Program]:
    """Inputs once, then each program's uninterrupted reference, in dependency order."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    synth = work / "synth"
    run_to_end(
        [
            *CLI,
            "synth",
            "--out",
            str(synth),
            "--videos",
            str(sizes.videos),
            "--seed",
            "0",
            "--benchmark-clips",
            "28",
        ],
        logs / "synth.log",
        timeout,
    )
    table = programs(work, sizes)
    for name, program in table.items():
        if name == "import":
            release = work / "release.json"
            run_to_end(
                [
                    *CLI,
                    "official",
                    "export",
                    "--shards",
                    str(work / "reference" / "build"),
                    "--out",
                    str(release),
                ],
                logs / "export.log",
                timeout,
            )
        out = work / "reference" / name
        first, total = run_to_end(program.command(out), logs / f"reference-{name}.log", timeout, watch=out)
        program.window, program.seconds = (first or 0.0, total), total
    return table


def schedule(points: int, seed: int, table: dict[str, Program], sizes: Sizes) -> list[KillPoint]:
    rng = random.Random(seed)
    counts = {name: points * share // sum(SHARE.values()) for name, share in SHARE.items()}
    for name in list(SHARE)[: points - sum(counts.values())]:
        counts[name] += 1
    # step-N and last.ckpt at each period, then last.ckpt at the final step when it is not a period's
    saves = sizes.steps // sizes.every * 2 + (1 if sizes.steps % sizes.every else 0)
    plan = []
    for name, count in counts.items():
        low, high = table[name].window
        for index in range(count):
            delay = rng.uniform(0.0, high - low)
            if name != "train":
                plan.append(KillPoint(name, signal.SIGKILL, delay))
                continue
            sig, in_save = TRAIN_KINDS[index % len(TRAIN_KINDS)]
            if in_save:  # a little into the save, so kills land at different depths of torch.save
                plan.append(KillPoint(name, sig, None, rng.randint(1, saves), rng.uniform(0.0, 0.05)))
            else:
                plan.append(KillPoint(name, sig, delay))
    return plan


def run_kills(
    points: int = 20, seed: int = 0, *, workdir: Path, quick: bool = True, timeout: float = 300
) -> dict[str, Any]:
    """Kill each program at seeded points, rerun it to completion and compare with an uninterrupted run."""
    sizes = QUICK if quick else FULL
    work = Path(workdir)
    started = time.monotonic()
    table = prepare(work, sizes, timeout)
    plan = schedule(points, seed, table, sizes)
    mismatches: list[str] = []
    found: list[str] = []
    crashes: list[str] = []
    identical = 0
    for number, point in enumerate(plan):
        program = table[point.program]
        ref, out = work / "reference" / point.program, work / "points" / f"{number:02d}-{point.program}"
        log = work / "logs" / f"{out.name}.log"
        if not kill_once(program, point, out, log, timeout):
            # it finished before the kill (it ran faster than the reference): kill earlier, then at its
            # first output file, so that every point is a kill
            for delay in ((point.delay or program.seconds - program.window[0]) / 2, 0.0):
                shutil.rmtree(out, ignore_errors=True)
                point.delay, point.save_index = delay, 0
                if kill_once(program, point, out, log, timeout):
                    break
            else:
                point.outcome = "missed"
                crashes.append(f"#{number} {point.program}: ended before every kill time")
                continue
        point.problems += [f"after the kill: {p}" for p in program.after_kill(ref, out)]
        try:
            run_to_end(program.command(out), log, timeout)
        except Failed as err:
            point.outcome = "rerun failed"
            crashes.append(f"#{number} {point.program} ({point.sig.name} at {point.at:.2f} s): {err}")
            continue
        point.problems += program.compare(ref, out)
        left = leftovers(ref, out, lambda rel: rel.parts[1:2] == ("csv",))
        found += left
        point.outcome = "identical" if not point.problems and not left else "DIFFERENT"
        identical += point.outcome == "identical"
        mismatches += [
            f"#{number} {point.program} ({point.sig.name} at {point.at:.2f} s): {p}" for p in point.problems
        ]
    return {
        "kill_points": sum(p.outcome not in ("", "missed") for p in plan),
        "identical_after_kill": identical,
        "mismatches": mismatches,
        "leftovers": found,
        "crashes": crashes,
        "points": [
            {
                "program": p.program,
                "signal": p.sig.name,
                "trigger": "in checkpoint save" if p.delay is None else "delay",
                "at_s": round(p.at, 2),
                "in_save": p.in_save,
                "outcome": p.outcome,
            }
            for p in plan
        ],
        "windows": {name: [round(x, 2) for x in program.window] for name, program in table.items()},
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 videos, 3 training steps (default 8, 6)")
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-") as tmp:
        summary = run_kills(args.points, args.seed, workdir=args.workdir or Path(tmp), quick=args.quick)
    print("running windows (s, first output file to exit, uninterrupted):")
    for name, (low, high) in summary["windows"].items():
        print(f"  {name:<7} {low:6.2f} .. {high:6.2f}")
    print(f"{'#':>3}  {'program':<7} {'signal':<8} {'trigger':<19} {'at s':>6}  {'in save':<7}  outcome")
    for number, p in enumerate(summary["points"]):
        print(
            f"{number:>3}  {p['program']:<7} {p['signal']:<8} {p['trigger']:<19} {p['at_s']:>6.2f}  "
            f"{'yes' if p['in_save'] else '-':<7}  {p['outcome']}"
        )
    for kind in ("mismatches", "leftovers", "crashes"):
        for line in summary[kind]:
            print(f"{kind[:-1]}: {line}")
    kills = summary["kill_points"]
    print(f"identical after kill: {summary['identical_after_kill']}/{kills} ({summary['seconds']:.0f} s)")
    print(
        f"RESULT kill_points={kills} identical_after_kill={summary['identical_after_kill']} "
        f"kill_crashes={len(summary['crashes'])} kill_leftovers={len(summary['leftovers'])}"
    )
    if summary["mismatches"] or summary["leftovers"] or summary["crashes"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
