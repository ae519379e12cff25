"""What a run shows and keeps: the check summary, the result table, the paper-style suite table, the
list of clips left out (JSON lines beside the result JSON) and the W&B run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from action100m.eval.benchmarks import Benchmark, Clip, RetrievalSet
from action100m.eval.config import BenchmarkConfig, WandbConfig
from action100m.report.scaling import RETRIEVAL_HEADLINE, metric_of
from action100m.report.wandb_report import RESULTS_KEY, results_for_summary
from action100m.utils.atomic import write_text_atomic

# Column headers of the papers' zero-shot table, by benchmark config name.
PAPER_HEADERS = {
    "ssv2": "SSv2",
    "epic_kitchens_action": "EK100",
    "egoexo4d_keystep": "EgoExo4D",
    "kinetics400": "K400",
    "coin_step": "COIN SR",
    "coin_task": "COIN TR",
    "crosstask_step": "CT SR",
    "crosstask_task": "CT TR",
    "msrvtt": "MSR-VTT",
    "activitynet_captions": "ActivityNet",
    "didemo": "DiDeMo",
    "msvd": "MSVD",
    "youcook2": "YouCook2",
    "dream1k": "DREAM-1K",
}


def format_check(
    bench: BenchmarkConfig, data: Benchmark | RetrievalSet, clips: list[Clip], missing: list[Clip]
) -> str:
    videos = len({c.video for c in clips})
    absent = len({c.video for c in missing})
    where = bench.videos or bench.root
    lines = [f"{bench.name}: {data.split} split, {len(clips):,} clips"]
    if isinstance(data, Benchmark):
        lines[0] += f", {len(data.class_names):,} classes (task {data.task})"
    else:
        lines[0] += f", {len(data.captions):,} captions"
    lines.append(f"  videos: {videos:,} referenced, {absent:,} missing under {where}")
    if missing:
        lines.append(f"  first missing: {missing[0].video}")
    lines.append("  files: " + ", ".join(str(p) for p in data.files))
    lines += [f"  {key}: {value}" for key, value in data.notes.items()]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_result(result: dict[str, Any]) -> str:
    counts, metrics = result["counts"], result["metrics"]
    head = (
        f"{result['benchmark']} ({result['split']}, {result['model']['name']}, "
        f"{result['protocol']['num_frames']} frames): {counts['clips_evaluated']:,} of "
        f"{counts['clips_read']:,} clips ({counts['clips_missing']} missing, "
        f"{counts['clips_failed']} failed)"
    )
    names = list(metrics)
    widths = [max(len(n), 7) for n in names]
    header = "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))
    values = "  " + "  ".join(
        (_percent(metrics[n]) if "rank" not in n else f"{metrics[n]:.1f}").rjust(w)
        for n, w in zip(names, widths, strict=True)
    )
    return "\n".join([head, header, values, f"  -> {result['path']}"])


def format_suite(results: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The papers' table: one row, each benchmark's headline metric (top-1; text-to-video R@1 for
    retrieval) and, per kind, their average over those with a score: `average_top1` and `top1` for
    classification, `average_t2v_r1` and `t2v_r1` for retrieval (None/empty without that kind)."""
    summary: dict[str, Any] = {}
    averages: dict[str, float | None] = {}
    for metric in ("top1", RETRIEVAL_HEADLINE):
        scores = {r["benchmark"]: r["metrics"].get(metric) for r in results if metric_of(r) == metric}
        scored = [v for v in scores.values() if v is not None]
        averages[metric] = sum(scored) / len(scored) if scored else None
        summary[metric], summary[f"average_{metric}"] = scores, averages[metric]
    headers, row = ["model"], [model]
    for metric, label in (("top1", "avg top-1"), (RETRIEVAL_HEADLINE, "avg t2v R@1")):
        if summary[metric]:
            headers.append(label)
            row.append(_percent(averages[metric]))
    for r in results:
        headers.append(PAPER_HEADERS.get(r["benchmark"], r["benchmark"]))
        row.append(_percent(r["metrics"].get(metric_of(r))))
    widths = [max(len(h), len(v)) for h, v in zip(headers, row, strict=True)]
    summary["table"] = "\n".join(
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + " |"
        for cells in (headers, ["-" * w for w in widths], row)
    )
    return summary


def write_left_out(folder: Path, left_out: list[tuple[Clip, str]]) -> Path:
    """folder/left_out.jsonl: one line {clip, video, reason} per clip not evaluated."""
    lines = (
        json.dumps({"clip": c.id, "video": str(c.video), "reason": reason}) + "\n" for c, reason in left_out
    )
    return write_text_atomic(folder / "left_out.jsonl", "".join(lines))


def log_wandb(
    cfg: WandbConfig, config: dict, results: list[dict[str, Any]], averages: dict[str, float], folder: Path
) -> None:
    """One W&B run (job type `eval`, kept in `folder`/wandb beside the result JSONs): the metrics as
    charts and a table; the summary's `RESULTS_KEY` keeps each benchmark's metrics with what the model
    was trained on (`train`), which `action100m report scaling --wandb-project` reads back."""
    import wandb

    trained_on = next((r["train"] for r in results if "train" in r), None)
    folder.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=cfg.project,
        entity=cfg.entity,
        mode=cfg.mode,
        job_type="eval",
        dir=str(folder),
        config={**config, **({"train": trained_on} if trained_on else {})},
    )
    logged: dict[str, Any] = {
        f"zero_shot/{r['benchmark']}/{k}": v
        for r in results
        for k, v in r["metrics"].items()
        if v is not None
    }
    logged.update({f"zero_shot/{key}": value for key, value in averages.items()})
    columns = [
        "benchmark",
        "split",
        "clips_evaluated",
        "clips_missing",
        "clips_failed",
        "top1",
        "top5",
        "mean_class",
    ]
    rows = [
        [
            r["benchmark"],
            r["split"],
            *(r["counts"][c] for c in columns[2:5]),
            *(r["metrics"].get(m) for m in columns[5:]),
        ]
        for r in results
    ]
    logged["zero_shot/table"] = wandb.Table(columns=columns, data=rows)
    run.log(logged)
    run.summary[RESULTS_KEY] = results_for_summary(results)
    run.finish()
