import json

import pytest

from action100m.report.scaling import scaling_report
from action100m.report.wandb_report import report_blocks, results_for_summary, results_from_summary
from tests.report.test_scaling import write_results


def test_eval_run_summary_reads_back_as_results():
    trained = {
        "benchmark": "synth",
        "metrics": {"top1": 0.2, "top5": 0.5},
        "train": {"scale": 0.3, "samples": 1398, "samples_seen": 12800, "seed": 0},
    }
    baseline = {"benchmark": "ssv2", "metrics": {"top1": 0.1}}  # a CLIP model: no training scale
    summary = {"zero_shot/synth/top1": 0.2, **{"zero_shot/results": results_for_summary([trained, baseline])}}
    assert results_from_summary(json.loads(json.dumps(summary))) == [trained]  # as the W&B API returns it
    assert results_from_summary({"zero_shot/average_top1": 0.3}) == []


def test_report_blocks_plot_each_benchmark_against_the_report_axis(tmp_path):
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    (tmp_path / "runs").mkdir()
    write_results(tmp_path / "runs", seeds=(0,))
    report = scaling_report(tmp_path / "runs", tmp_path / "report")
    heading, table, grid = report_blocks(report, tmp_path / "report", "proj", "team")
    assert isinstance(heading, wr.H1) and "| scale | samples seen | ssv2 | synth | average |" in table.text
    assert [(p.x.name, p.y.name, p.log_x) for p in grid.panels] == [
        ("train.samples_seen", "zero_shot/ssv2/top1", True),
        ("train.samples_seen", "zero_shot/synth/top1", True),
    ]
    assert grid.runsets[0].project == "proj" and grid.runsets[0].entity == "team"
