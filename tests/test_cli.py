import json

import pytest

from action100m.cli import main


@pytest.mark.slow
def test_miniature_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = "['trainer.max_steps=4','data.batch_size=8','data.epoch_batches=2','checkpoint.every_n_steps=2','data.num_workers=0']"
    arguments = [
        "demo",
        f"out={out}",
        "videos=8",
        "benchmark_clips=28",
        "scales=[0.5,1.0]",
        "build_overrides=['samples_per_shard=4']",
        f"train_overrides={overrides}",
    ]
    assert main(arguments) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chance"] == pytest.approx(1 / 28)
    assert [s["scale"] for s in summary["scales"]] == [0.5, 1.0]
    assert all(0.0 <= s["top1"] <= 1.0 and s["samples_seen"] == 32 for s in summary["scales"])
    assert 0.0 < summary["boundary_f1"] <= 1.0
    assert set(summary["targets"]) == {
        "minutes <= 15",
        "top-1 rises with data scale",
        "largest scale >= 5x chance",
    }
    assert (out / "report" / "scaling.png").is_file() and (out / "README.md").is_file()
    # 2 training runs, 2 eval runs and the report's summary run, all offline and in one project
    assert len(summary["wandb"]["offline_runs"]) == 5 and summary["wandb"]["project"] == "action100m-demo"
    assert "Targets:" in capsys.readouterr().out


def test_bad_override_exits_2_with_one_line(tmp_path, capsys):
    assert main(["demo", "vidoes=3", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("action100m demo: error: config key 'vidoes'") and "\n" not in err
