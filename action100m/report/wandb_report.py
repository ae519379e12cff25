"""The scaling report on W&B: results read from a project's runs, and the plot and table published.

Online, with `wandb-workspaces` installed (`pip install -e ".[reports]"`), a W&B Report with the same
panels is created in the project. Otherwise (offline, or without that package) the plot and the
table are logged to one summary run, which `wandb sync` uploads later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from action100m.report.scaling import ReportError


def results_from_project(
    project: str, entity: str | None = None, metric: str = "top1"
) -> list[dict[str, Any]]:
    """Eval runs of a W&B project as result dicts (their summary holds benchmark, metrics and train)."""
    import wandb

    path = f"{entity}/{project}" if entity else project
    results = []
    for run in wandb.Api().runs(path, filters={"jobType": "eval"}):
        summary = dict(run.summary)
        if (
            "benchmark" in summary
            and metric in summary.get("metrics", {})
            and "scale" in summary.get("train", {})
        ):
            results.append(
                {"benchmark": summary["benchmark"], "metrics": summary["metrics"], "train": summary["train"]}
            )
    if not results:
        raise ReportError(f"W&B project {path}: no eval runs with metrics.{metric} and train.scale")
    return results


def publish(report: dict[str, Any], out: Path, project: str, entity: str | None = None) -> str:
    """Publish the report; returns where it went (a Report URL, or the summary run's directory)."""
    import wandb

    online = wandb.setup().settings.mode not in ("offline", "disabled")
    if online:
        try:
            import wandb_workspaces.reports.v2 as wr
        except ImportError:
            online = False
    run = wandb.init(project=project, entity=entity, job_type="scaling-report", name="scaling-report")
    table = wandb.Table(columns=["benchmark", "scale", "samples_seen", "mean", "std"],
                        data=[[p["benchmark"], p["scale"], p["samples_seen"], p["mean"], p["std"]] for p in report["points"]])  # fmt: skip
    run.log({"scaling/plot": wandb.Image(str(out / "scaling.png")), "scaling/table": table})
    run.summary["scaling/fits"] = report["fits"]
    where = run.dir
    run.finish()
    if online:
        blocks = [wr.H1("Data scaling"), wr.MarkdownBlock((out / "scaling.md").read_text(encoding="utf-8")),
                  wr.PanelGrid(runsets=[wr.Runset(entity=entity or "", project=project)],
                               panels=[wr.LinePlot(x="train.samples_seen", y=[f"metrics.{report['metric']}"], log_x=True)])]  # fmt: skip
        created = wr.Report(project=project, entity=entity or "", title="Data scaling", blocks=blocks)
        created.save()
        where = created.url
    return where
