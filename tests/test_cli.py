import json

import pytest

from action100m.cli import main


@pytest.mark.slow
@pytest.mark.timeout(600)  # 172 s measured with other jobs on the 2 cores
def test_miniature_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = (
        "['trainer.max_steps=4','data.batch_size=8','data.epoch_batches=2','checkpoint.every_n_steps=2']"
    )
    arguments = [
        "demo",
        f"out={out}",
        "videos=8",
        "benchmark_clips=28",
        "validation_clips=27",
        "scales=[0.5,1.0]",
        "train_seeds=[0,1]",
        "validate_every=2",
        "build_overrides=['samples_per_shard=4']",
        f"train_overrides={overrides}",
    ]
    assert main(arguments) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chance"] == pytest.approx(1 / 28) and summary["train_seeds"] == [0, 1]
    for figures in (summary["scales"], summary["validation"]["scales"]):
        assert [s["scale"] for s in figures] == [0.5, 1.0]
        for s in figures:
            assert s["seeds"] == [0, 1] and len(s["top1_seeds"]) == 2 and 16 <= s["samples_seen"] <= 32
            assert s["top1"] == pytest.approx(sum(s["top1_seeds"]) / 2) and 0.0 <= s["top1"] <= 1.0
    assert summary["validation"]["classes"] == 27
    assert 0.0 < summary["boundary_f1"] <= 1.0
    assert set(summary["targets"]) == {
        "minutes <= 15",
        "mean top-1 rises with data scale",
        "largest scale >= 6x chance on every seed (floor)",
        "largest scale >= 8x chance in the mean (goal)",
    }
    # each run validated at steps 2 and 4 and both splits scored the checkpoint with its best top-1
    selection = summary["checkpoint_selection"]
    assert selection["by"] == "zero_shot/synth_validation/top1" and len(selection["steps"]) == 4
    for run_json in (out / "train").glob("*/run.json"):
        run = json.loads(run_json.read_text())
        scored = {
            s["step"]: s["metrics"]["zero_shot/synth_validation/top1"] for s in run["zero_shot"]["scorings"]
        }
        assert list(scored) == [2, 4] and run["zero_shot"]["clips"] == 27
        best = next(step for step in scored if scored[step] == max(scored.values()))
        assert run["best_checkpoint"].endswith(f"best-step-{best:07d}.ckpt")
        evaluated = [
            json.loads(p.read_text())["model"]["checkpoint"] for p in (out / "eval").rglob("result.json")
        ]
        assert run["best_checkpoint"] in evaluated
    assert "kept its checkpoint with the best validation top-1" in (out / "README.md").read_text()
    assert (out / "report" / "scaling.png").is_file() and (out / "README.md").is_file()
    # the report is the test split's, one point per scale with its seeds
    report = json.loads((out / "report" / "scaling.json").read_text())
    assert report["points"] and all(len(p["values"]) == 2 for p in report["points"])
    assert report["x"] == "dataset_size"  # the kept checkpoints' steps differ; the budget does not
    # 4 training runs, 8 eval runs (4 checkpoints x 2 splits) and the report's summary run, one project
    assert len(summary["wandb"]["offline_runs"]) == 13 and summary["wandb"]["project"] == "action100m-demo"
    assert "Targets:" in capsys.readouterr().out


def test_bad_override_exits_2_with_one_line(tmp_path, capsys):
    assert main(["demo", "vidoes=3", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("action100m demo: error: config key 'vidoes'") and "\n" not in err
