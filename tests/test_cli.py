import json

from action100m.cli import main


def test_demo_runs_what_exists_and_says_what_does_not(tmp_path, capsys, shared_dir):
    out = tmp_path / "demo"
    assert main(["demo", f"out={out}", f"shared_dir={shared_dir}"]) == 0
    printed = capsys.readouterr().out
    assert "Not built yet" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["video"]["backends_identical"] is True
    assert summary["schema"] == {"nodes": 917, "lossless": True}
    assert (out / "pattern.mp4").is_file()
    assert summary["synth"]["videos"] == 10 and (out / "synth" / "manifest.jsonl").is_file()


def test_bad_override_exits_2_with_one_line(tmp_path, capsys):
    assert main(["demo", "video.backnd=pyav", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "action100m demo: error: config key 'video.backnd': Key 'backnd' not in 'VideoConfig'"
