import json
import os

import pytest

from action100m.cli import main
from action100m.report.scaling import (
    AVERAGE,
    ReportError,
    collect_points,
    fit_power_law,
    read_results,
    scaling_report,
)


def write_results(folder, law=lambda n: 0.02 * n**0.25, seeds=(0, 1)):
    """Hand-made results: two benchmarks on a known power law (one at half the value), three scales."""
    for scale, samples in ((0.01, 100), (0.1, 1_000), (1.0, 10_000)):
        for seed in seeds:
            for benchmark, factor in (("synth", 1.0), ("ssv2", 0.5)):
                top1 = factor * law(samples) + 0.01 * seed
                result = {
                    "benchmark": benchmark,
                    "metrics": {"top1": top1, "top5": min(1, 2 * top1)},
                    "train": {"scale": scale, "samples_seen": samples, "seed": seed},
                }
                path = folder / f"{benchmark}-{scale}-{seed}.json"
                path.write_text(json.dumps(result))
    (folder / "unrelated.json").write_text(json.dumps({"hello": 1}))


def test_fit_recovers_known_parameters():
    x = [10, 100, 1_000, 10_000]
    fit = fit_power_law(x, [3.0 * v**0.4 for v in x])
    assert (
        fit["a"] == pytest.approx(3.0) and fit["b"] == pytest.approx(0.4) and fit["r2"] == pytest.approx(1.0)
    )
    with pytest.raises(ReportError):
        fit_power_law([1], [1])


def test_points_average_and_error_bars(tmp_path):
    write_results(tmp_path)
    points = collect_points(read_results(tmp_path))
    synth = {p.scale: p for p in points if p.benchmark == "synth"}
    assert synth[1.0].values == pytest.approx([0.2, 0.21])
    assert synth[1.0].mean == pytest.approx(0.205) and synth[1.0].std == pytest.approx(0.005)
    average = {p.scale: p for p in points if p.benchmark == AVERAGE}
    assert average[0.1].mean == pytest.approx(0.75 * 0.02 * 1000**0.25 + 0.005)
    assert synth[0.01].samples_seen == 100


def test_report_files_and_table(tmp_path):
    (tmp_path / "runs").mkdir()
    write_results(tmp_path / "runs")
    report = scaling_report(tmp_path / "runs", tmp_path / "report")
    assert report["fits"]["synth"]["b"] == pytest.approx(0.25, abs=0.02)
    table = (tmp_path / "report" / "scaling.md").read_text()
    assert "| scale | samples seen | ssv2 | synth | average |" in table
    assert "| 1 | 10,000 | 10.5 ± 0.5 | 20.5 ± 0.5 | 15.5 ± 0.5 |" in table
    assert (tmp_path / "report" / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_and_offline_wandb_summary_run(tmp_path, monkeypatch, capsys, offline_wandb):
    (tmp_path / "runs").mkdir()
    write_results(tmp_path / "runs", seeds=(0,))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "scaling", "--runs", "runs", "--out", "report", "--wandb-project", "p"]) == 0
    printed = capsys.readouterr().out
    assert "Power-law fits" in printed and "published to W&B" in printed
    assert any("offline-run" in name for name in os.listdir(tmp_path / "report" / "wandb"))
    assert main(["report", "scaling", "--runs", "nothing-here", "--out", "r2"]) == 2


def test_fixed_budget_runs_are_plotted_against_dataset_size(tmp_path):
    (tmp_path / "runs").mkdir()
    for scale, size, top1 in ((0.1, 400, 0.03), (0.3, 1400, 0.06), (1.0, 4800, 0.18)):
        result = {
            "benchmark": "synth",
            "metrics": {"top1": top1},
            "train": {"scale": scale, "samples_seen": 12800, "samples": size, "seed": 0},
        }
        (tmp_path / "runs" / f"{scale}.json").write_text(json.dumps(result))
    report = scaling_report(tmp_path / "runs", tmp_path / "report")
    assert report["x"] == "dataset_size"
    assert report["fits"]["synth"]["b"] > 0.5
    table = (tmp_path / "report" / "scaling.md").read_text()
    assert "| scale | samples seen | training samples | synth |" in table
    assert "| 0.3 | 12,800 | 1,400 | 6.0 |" in table


def test_runs_that_kept_their_best_checkpoint_are_plotted_against_dataset_size_when_asked(tmp_path):
    # one budget, but each run's best checkpoint by validation came at another step
    (tmp_path / "runs").mkdir()
    for scale, size, seen, top1 in (
        (0.1, 400, 6400, 0.03),
        (0.3, 1400, 12800, 0.06),
        (1.0, 4800, 9600, 0.18),
    ):
        result = {
            "benchmark": "synth",
            "metrics": {"top1": top1},
            "train": {"scale": scale, "samples_seen": seen, "samples": size, "seed": 0},
        }
        (tmp_path / "runs" / f"{scale}.json").write_text(json.dumps(result))
    assert scaling_report(tmp_path / "runs", tmp_path / "auto")["x"] == "samples_seen"
    report = scaling_report(tmp_path / "runs", tmp_path / "report", x="dataset_size")
    assert report["x"] == "dataset_size"
    assert report["fits"]["synth"]["b"] == pytest.approx(
        fit_power_law([400, 1400, 4800], [0.03, 0.06, 0.18])["b"]
    )
    with pytest.raises(ReportError, match="unknown x axis 'steps'"):
        scaling_report(tmp_path / "runs", tmp_path / "bad", x="steps")


def test_retrieval_benchmarks_are_tabled_beside_classification_by_their_r1(tmp_path):
    (tmp_path / "runs").mkdir()
    write_results(tmp_path / "runs", seeds=(0,))
    for scale, samples, r1 in ((0.01, 100, 0.1), (0.1, 1_000, 0.2), (1.0, 10_000, 0.4)):
        result = {
            "benchmark": "msrvtt",
            "task": "retrieval",
            "metrics": {"t2v_r1": r1, "v2t_r1": r1 / 2, "t2v_median_rank": 3.0},
            "train": {"scale": scale, "samples_seen": samples, "seed": 0},
        }
        (tmp_path / "runs" / f"msrvtt-{scale}.json").write_text(json.dumps(result))
    report = scaling_report(tmp_path / "runs", tmp_path / "report")
    table = (tmp_path / "report" / "scaling.md").read_text()
    # the average stays the classification benchmarks' top-1, as in the papers' table
    assert "| scale | samples seen | msrvtt (t2v_r1) | ssv2 (top1) | synth (top1) | average |" in table
    assert "| 1 | 10,000 | 40.0 | 10.0 | 20.0 | 15.0 |" in table
    assert "t2v_r1, top1 in %" in table
    assert report["fits"]["msrvtt"]["b"] == pytest.approx(0.301, abs=0.001)
    # asked for one metric, only the results that carry it count
    only = collect_points(read_results(tmp_path / "runs", "t2v_r1"), "t2v_r1")
    assert {p.benchmark for p in only} == {"msrvtt"}
