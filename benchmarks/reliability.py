"""Reliability measured across the whole system: `make reliability` (this script with --quick).

Its four parts live in benchmarks/faults/ and run alone as well:
- kill.py: the build, the official import, training (inside checkpoint saves too), eval and the report are
  killed at seeded points and rerun; each must end as an uninterrupted run did, with nothing partial left;
- soak.py: the HTTP backend at 128 requests in flight against a fault-injecting server that also goes away
  and comes back: every request answered or recorded, nothing hung or leaked, RSS flat;
- inputs.py: bad and hostile videos, manifests, annotations, shards, checkpoints and configs give one-line
  errors or recorded failures with nothing else lost; unusual but valid videos build; a full disk gives a
  clear error, nothing half-written, and a rerun with space the same bytes;
- requeue.py: a 2-task DDP training job on the live one-node SLURM cluster sent USR1 at seeded points of its
  steps (to the job, to one rank, skewed between ranks, during the requeue save): every time one checkpoint,
  one requeue, a resume at the saved step, no deadlock; the final weights those of the run trained straight.
  Skipped, with the reason, where SLURM cannot run.

--quick: a 60 s soak, the smallest inputs and 5 requeues; without it the soak runs 30 minutes, every input
case runs and the job is requeued 10 times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.faults import soak  # noqa: E402
from benchmarks.faults.inputs import run_inputs  # noqa: E402
from benchmarks.faults.kill import run_kills  # noqa: E402
from benchmarks.faults.requeue import run_requeues  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 60 s soak and the smallest inputs")
    parser.add_argument(
        "--soak-seconds", type=float, default=None, help="default: 60 with --quick, else 1800"
    )
    parser.add_argument("--kill-points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="chooses the kill points and the fault schedule")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="a100m-reliability-") as tmp:
        print("== kill and rerun", flush=True)
        kills = run_kills(args.kill_points, args.seed, workdir=Path(tmp) / "kill", quick=args.quick)
        print("== HTTP soak", flush=True)
        soaked = soak.run_soak(args.soak_seconds or (60.0 if args.quick else 1800.0), seed=args.seed)
        print("== bad inputs, unusual videos, a full disk", flush=True)
        inputs = run_inputs(Path(tmp) / "inputs", quick=args.quick)
        print("== SLURM requeue under signals", flush=True)
        requeues = run_requeues(5 if args.quick else 10, args.seed, Path(tmp) / "requeue")
    problems = [*kills["mismatches"], *(f"left behind: {path}" for path in kills["leftovers"])]
    problems += [f"crashed on rerun: {line}" for line in kills["crashes"]]
    if not soak.passed(soaked):
        problems.append(
            f"soak: {soaked['unaccounted']} unaccounted, {soaked['hangs']} hangs, leaks: tasks "
            f"{soaked['task_leak']}, fds {soaked['fd_leak']}; RSS {soaked['rss_growth']:+.1%}"
        )
    problems += [line for line in inputs["cases"] if not line.startswith("ok")]
    if inputs["disk_full"] != "ok":
        problems.append(f"disk full: {inputs['disk_full_detail']}")
    if "skipped" in requeues:
        print(f"reliability: requeue part skipped, no SLURM cluster: {requeues['skipped']}")
    problems += [f"requeue: {line}" for line in requeues.get("problems", [])]
    for problem in problems:
        print(f"reliability: {problem}")
    crashes = len(kills["crashes"]) + inputs["crashes"]
    print(f"reliability: {len(problems)} problems in {time.perf_counter() - started:.0f} s")
    print(
        f"RESULT kill_points={kills['kill_points']} identical_after_kill={kills['identical_after_kill']} "
        f"soak_requests={soaked['requests']} soak_unaccounted={soaked['unaccounted']} "
        f"soak_rss_growth={soaked['rss_growth']:.3f} bad_kinds={inputs['bad_kinds']} crashes={crashes} "
        f"lost={inputs['lost']} odd_videos_built={inputs['odd_videos_built']} "
        f"requeue_signals={requeues.get('signals', 0)} requeues={requeues.get('requeues', 0)} "
        f"requeue_deadlocks={requeues.get('deadlocks', 0)}"
    )
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
