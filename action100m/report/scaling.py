"""Data-scaling curves from zero-shot result JSONs: a plot, a fitted power law and a table.

Each result file is one evaluation: {"benchmark": ..., "metrics": {"top1": ..., ...},
"train": {"scale": ..., "samples_seen": ..., "seed": ...}}. Points are grouped by (benchmark, scale);
seeds at the same point give the mean and, with several, an error bar (standard deviation). The default
metric, "headline", is each result's own table figure: top-1 for classification, text-to-video R@1
for retrieval, so retrieval benchmarks are tabled beside classification ones; averages are per metric.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from action100m.errors import Action100MError
from action100m.utils.atomic import atomic_path, write_json_atomic, write_text_atomic

AVERAGE = "average"  # over the classification benchmarks (top-1), as the papers' table
HEADLINE = "headline"
RETRIEVAL_HEADLINE = "t2v_r1"


def metric_of(result: dict[str, Any], metric: str = HEADLINE) -> str:
    """`metric`, or for "headline" the result's own table figure: "top1", or "t2v_r1" for retrieval
    (told by its metrics, since W&B summaries keep only those)."""
    if metric != HEADLINE:
        return metric
    metrics = result.get("metrics", {})
    return RETRIEVAL_HEADLINE if "top1" not in metrics and RETRIEVAL_HEADLINE in metrics else "top1"


def average_name(metric: str) -> str:
    return AVERAGE if metric == "top1" else f"{AVERAGE} {metric}"


class ReportError(Action100MError):
    """Results that cannot make a scaling report."""


@dataclass
class Point:
    benchmark: str
    scale: float
    samples_seen: float
    values: list[float]  # one per seed
    dataset_size: float = 0.0  # training samples in the scale's subset, when the results say
    metric: str = "top1"

    def x(self, axis: str) -> float:
        return self.samples_seen if axis == "samples_seen" else self.dataset_size

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values)) if len(self.values) > 1 else 0.0


def read_results(runs: str | os.PathLike, metric: str = HEADLINE) -> list[dict[str, Any]]:
    """Every result JSON under `runs` that carries `metric` (see `metric_of`) and its training scale."""
    results = []
    for path in sorted(Path(runs).rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if (
            isinstance(data, dict)
            and isinstance(data.get("metrics"), dict)
            and metric_of(data, metric) in data["metrics"]
            and "scale" in data.get("train", {})
        ):
            results.append({**data, "_path": str(path)})
    if not results:
        raise ReportError(
            f"{runs}: no result JSON with metrics.{'top1 or t2v_r1' if metric == HEADLINE else metric} and train.scale"
        )
    return results


def collect_points(results: list[dict[str, Any]], metric: str = HEADLINE) -> list[Point]:
    """Points per (benchmark, scale), plus per (scale, seed) the average over the benchmarks that
    report the same metric (classification's top-1: `AVERAGE`)."""
    grouped: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        grouped[(result["benchmark"], float(result["train"]["scale"]))].append(result)
    points = []
    for (benchmark, scale), group in sorted(grouped.items()):
        seen = float(np.mean([r["train"].get("samples_seen", 0) for r in group]))
        size = float(np.mean([r["train"].get("samples", 0) for r in group]))
        name = metric_of(group[0], metric)
        values = [float(r["metrics"][name]) for r in group]
        points.append(Point(benchmark, scale, seen, values, size, name))
    for name in sorted({p.metric for p in points}):
        benchmarks = sorted({p.benchmark for p in points if p.metric == name})
        if len(benchmarks) < 2:
            continue
        for scale in sorted({p.scale for p in points}):
            at_scale = [p for p in points if p.scale == scale and p.metric == name]
            if len(at_scale) == len(benchmarks):
                seeds = min(len(p.values) for p in at_scale)
                values = [float(np.mean([p.values[s] for p in at_scale])) for s in range(seeds)]
                seen = float(np.mean([p.samples_seen for p in at_scale]))
                points.append(Point(average_name(name), scale, seen, values, metric=name))
    return points


def fit_power_law(x: list[float], y: list[float]) -> dict[str, float]:
    """y = a · x^b by least squares in log-log space; r2 is that fit's coefficient of determination."""
    if len(x) < 2 or any(v <= 0 for v in (*x, *y)):
        raise ReportError("a power law needs at least two points with positive values")
    log_x, log_y = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    b, log_a = np.polyfit(log_x, log_y, 1)
    residual = log_y - (log_a + b * log_x)
    total = log_y - log_y.mean()
    r2 = 1.0 - float(residual @ residual) / float(total @ total) if float(total @ total) > 0 else 1.0
    return {"a": float(math.exp(log_a)), "b": float(b), "r2": r2}


def _is_average(benchmark: str) -> bool:
    return benchmark == AVERAGE or benchmark.startswith(f"{AVERAGE} ")


def markdown_table(points: list[Point], metric: str) -> str:
    """Rows = scales (with samples seen and, when the results say, the training set's size), columns =
    benchmarks then the averages, like the paper's table; with several metrics each column names its."""
    benchmarks = sorted({p.benchmark for p in points if not _is_average(p.benchmark)})
    columns = benchmarks + sorted({p.benchmark for p in points if _is_average(p.benchmark)})
    metrics = {p.benchmark: p.metric for p in points}
    mixed = len(set(metrics.values())) > 1
    by_key = {(p.benchmark, p.scale): p for p in points}
    sized = all(p.dataset_size > 0 for p in points if not _is_average(p.benchmark))
    titles = [f"{c} ({metrics[c]})" if mixed and not _is_average(c) else c for c in columns]
    heads = ["scale", "samples seen", *(["training samples"] if sized else []), *titles]
    lines = [f"| {' | '.join(heads)} |", "|" + "---|" * len(heads)]
    for scale in sorted({p.scale for p in points}):
        seen = next(p.samples_seen for p in points if p.scale == scale)
        size = next((f"{p.dataset_size:,.0f} | " for p in points if p.scale == scale and sized), "")
        cells = []
        for column in columns:
            point = by_key.get((column, scale))
            cells.append(
                "—"
                if point is None
                else f"{100 * point.mean:.1f}" + (f" ± {100 * point.std:.1f}" if point.std else "")
            )
        lines.append(f"| {scale:g} | {seen:,.0f} | {size}{' | '.join(cells)} |")
    shown = ", ".join(sorted(set(metrics.values()))) if metric == HEADLINE else metric
    return "\n".join(lines) + f"\n\n{shown} in %, mean ± std over seeds where there are several.\n"


X_AXES = ("auto", "samples_seen", "dataset_size")


def x_axis(points: list[Point], x: str = "auto") -> str:
    """`x`, or for "auto" samples seen unless every scale saw the same number (a fixed budget): then
    the dataset size. Runs that keep their best checkpoint by validation stop at different samples seen
    though they had one budget: name "dataset_size" for them."""
    if x not in X_AXES:
        raise ReportError(f"unknown x axis {x!r}; choose one of {list(X_AXES)}")
    sized = all(p.dataset_size > 0 for p in points if not _is_average(p.benchmark))
    if x == "dataset_size" and not sized:
        raise ReportError(
            "x axis dataset_size: some results do not record train.samples (their dataset size)"
        )
    if x != "auto":
        return x
    if len({p.samples_seen for p in points}) > 1 or not all(p.dataset_size > 0 for p in points):
        return "samples_seen"
    return "dataset_size"


def plot(points: list[Point], fits: dict[str, dict[str, float]], metric: str, axis: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for benchmark in sorted({p.benchmark for p in points}, key=lambda b: (_is_average(b), b)):
        series = sorted((p for p in points if p.benchmark == benchmark), key=lambda p: p.x(axis))
        x = [p.x(axis) for p in series]
        style = {"color": "black", "linewidth": 2.5} if _is_average(benchmark) else {}
        drawn = axes.errorbar(
            x,
            [100 * p.mean for p in series],
            yerr=[100 * p.std for p in series],
            marker="o",
            capsize=3,
            label=benchmark if series[0].metric == "top1" else f"{benchmark} ({series[0].metric})",
            **style,
        )
        if benchmark in fits:
            grid = np.geomspace(min(x), max(x), 50)
            fit = fits[benchmark]
            axes.plot(
                grid,
                100 * fit["a"] * grid ** fit["b"],
                linestyle="--",
                alpha=0.5,
                color=drawn.lines[0].get_color(),
            )
    axes.set_xscale("log")
    axes.set_xlabel("training samples seen" if axis == "samples_seen" else "training set size (samples)")
    shown = "/".join(sorted({p.metric for p in points})) if metric == HEADLINE else metric
    axes.set_ylabel(f"zero-shot {shown} (%)")
    axes.set_title("Data scaling")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:  # a report killed mid-plot leaves the old figure, not half of one
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def scaling_report(
    runs: str | os.PathLike, out: str | os.PathLike, metric: str = HEADLINE, x: str = "auto"
) -> dict[str, Any]:
    """Write scaling.png, scaling.md and scaling.json under `out`; returns the report as data. `x`: see
    `x_axis`."""
    out = Path(out)
    points = collect_points(read_results(runs, metric), metric)
    axis = x_axis(points, x)
    fits = {}
    for benchmark in sorted({p.benchmark for p in points}):
        series = [p for p in points if p.benchmark == benchmark]
        if len(series) >= 2 and all(p.mean > 0 and p.x(axis) > 0 for p in series):
            fits[benchmark] = fit_power_law([p.x(axis) for p in series], [p.mean for p in series])
    table = markdown_table(points, metric)
    metrics = {p.benchmark: p.metric for p in points}
    law = "\n".join(
        f"- {b}: {metrics[b]} ≈ {f['a']:.3g} · {axis}^{f['b']:.3f} (R² {f['r2']:.2f})"
        for b, f in fits.items()
    )
    plot(points, fits, metric, axis, out / "scaling.png")
    write_text_atomic(
        out / "scaling.md",
        f"# Data scaling\n\n{table}\n## Power-law fits\n\n{law or 'too few points'}\n\n![scaling](scaling.png)\n",
    )
    report = {
        "metric": metric,
        "x": axis,
        "points": [p.__dict__ | {"mean": p.mean, "std": p.std} for p in points],
        "fits": fits,
    }
    write_json_atomic(out / "scaling.json", report)
    return report
