"""The scaling report on W&B: results read from a project's eval runs, and the plot and table published.

Online, with `wandb-workspaces` installed (`pip install -e ".[reports]"`), a W&B Report with the same
panels is created in the project. Otherwise (offline, or without that package) the plot and the
table are logged to one summary run, which `wandb sync` uploads later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from action100m.report.scaling import AVERAGE, HEADLINE, ReportError, metric_of

RESULTS_KEY = "zero_shot/results"  # what `eval.py logger.wandb.enabled=true` keeps in each run's summary
X_CONFIG_KEYS = {"samples_seen": "train.samples_seen", "dataset_size": "train.samples"}


def results_for_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """What an eval run keeps under `RESULTS_KEY`: per benchmark, its metrics and (for checkpoints that
    recorded it) what the model was trained on."""
    return {
        r["benchmark"]: {"metrics": r["metrics"], **({"train": r["train"]} if "train" in r else {})}
        for r in results
    }


def results_from_summary(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The result dicts of one eval run's W&B summary: one per benchmark whose model knew its training
    scale (runs of models without it, e.g. CLIP baselines, give none)."""
    return [
        {"benchmark": benchmark, "metrics": dict(entry["metrics"]), "train": dict(entry["train"])}
        for benchmark, entry in dict(summary.get(RESULTS_KEY) or {}).items()
        if "train" in entry and "scale" in entry["train"]
    ]


def results_from_project(
    project: str, entity: str | None = None, metric: str = HEADLINE
) -> list[dict[str, Any]]:
    """Eval runs of a W&B project as result dicts."""
    import wandb

    path = f"{entity}/{project}" if entity else project
    results = [
        result
        for run in wandb.Api().runs(path, filters={"jobType": "eval"})
        for result in results_from_summary(run.summary)
        if metric_of(result, metric) in result["metrics"]
    ]
    if not results:
        raise ReportError(
            f"W&B project {path}: no eval runs with metrics.{'top1 or t2v_r1' if metric == HEADLINE else metric} and train.scale"
        )
    return results


def report_blocks(report: dict[str, Any], out: Path, project: str, entity: str | None = None) -> list[Any]:
    """The W&B Report's blocks: the markdown table and fits, then one scatter panel per benchmark over the
    project's eval runs (x from their config's `train`, y from their summary)."""
    import wandb_workspaces.reports.v2 as wr

    metrics = {
        p["benchmark"]: p["metric"] for p in report["points"] if not p["benchmark"].startswith(AVERAGE)
    }
    benchmarks = sorted(metrics)
    scatters = [
        wr.ScatterPlot(
            title=f"{benchmark}: zero-shot {metrics[benchmark]} vs {report['x']}",
            x=wr.Config(X_CONFIG_KEYS[report["x"]]),
            y=wr.SummaryMetric(f"zero_shot/{benchmark}/{metrics[benchmark]}"),
            log_x=True,
        )
        for benchmark in benchmarks
    ]
    return [
        wr.H1("Data scaling"),
        wr.MarkdownBlock((out / "scaling.md").read_text(encoding="utf-8")),
        wr.PanelGrid(runsets=[wr.Runset(entity=entity or "", project=project)], panels=scatters),
    ]


def publish(report: dict[str, Any], out: Path, project: str, entity: str | None = None) -> str:
    """Publish the report; returns where it went (a Report URL, or the summary run's directory, which
    lives under `out`/wandb)."""
    import wandb

    online = wandb.setup().settings.mode not in ("offline", "disabled")
    if online:
        try:
            import wandb_workspaces.reports.v2 as wr
        except ImportError:
            online = False
    run = wandb.init(
        project=project, entity=entity, job_type="scaling-report", name="scaling-report", dir=str(out)
    )
    table = wandb.Table(
        columns=["benchmark", "scale", "samples_seen", "dataset_size", "mean", "std"],
        data=[
            [p["benchmark"], p["scale"], p["samples_seen"], p["dataset_size"], p["mean"], p["std"]]
            for p in report["points"]
        ],
    )
    run.log({"scaling/plot": wandb.Image(str(out / "scaling.png")), "scaling/table": table})
    run.summary["scaling/fits"] = report["fits"]
    where = run.dir
    run.finish()
    if online:
        created = wr.Report(
            project=project,
            entity=entity or "",
            title="Data scaling",
            blocks=report_blocks(report, out, project, entity),
        )
        created.save()
        where = created.url
    return where
