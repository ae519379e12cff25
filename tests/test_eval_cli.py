"""`python eval.py` end to end on SynthActions' benchmark with a tiny CLIP: the command, the result JSON,
check_only, missing and undecodable videos, zero_shot suites, retrieval and W&B logging."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from action100m.errors import ConfigError
from action100m.eval.config import register_eval_configs
from action100m.eval.data import SAMPLING
from action100m.eval.errors import EvalError
from action100m.eval.run import run_eval
from action100m.report.scaling import read_results
from tests.eval.conftest import SYNTH_CLIPS, synth_benchmark, tiny_clip  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]


def eval_config(*overrides: str):
    register_eval_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("eval", overrides=list(overrides)))


def clip_run(root: Path, model: Path, out: Path, *overrides: str) -> list[str]:
    return [
        f"zero_shot.root={root}",
        "encoder=clip",
        f"encoder.model={model}",
        f"output_dir={out}",
        f"cache_dir={out / 'cache'}",
        "progress=false",
        "workers=0",
        *overrides,
    ]


def test_command_end_to_end(synth_benchmark, tiny_clip, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    command = [
        sys.executable,
        str(ROOT / "eval.py"),
        "zero_shot=synth",
        *clip_run(synth_benchmark, tiny_clip, out, "workers=2", "zero_shot.num_frames=4"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (
        "top1" in done.stdout and f"{SYNTH_CLIPS} of {SYNTH_CLIPS} clips (0 missing, 0 failed)" in done.stdout
    )
    [path] = (out / "synth").glob("tiny_clip*/validation-4f-1x1-default/result.json")
    result = json.loads(path.read_text())
    assert result["model"]["kind"] == "clip" and len(result["model"]["checkpoint_sha256"]) == 64
    expected = {
        "templates": ["{}"],
        "num_frames": 4,
        "temporal_views": 1,
        "spatial_crops": 1,
        "crop_size": 32,
        "template_set": "default",
        "sampling": SAMPLING,
    }
    assert {key: result["protocol"][key] for key in expected} == expected
    assert result["counts"] == {
        "clips_read": SYNTH_CLIPS,
        "clips_missing": 0,
        "clips_failed": 0,
        "clips_evaluated": SYNTH_CLIPS,
    }
    assert result["split"] == "validation" and result["num_classes"] == 28
    assert set(result["metrics"]) == {"top1", "top5", "mean_class"} and 0 <= result["metrics"]["top1"] <= 1
    assert result["text_embeddings"]["texts_encoded"] == 28
    # the same model and templates again: class embeddings come from the cache, not the Y-encoder
    again = run_eval(
        eval_config("zero_shot=synth", *clip_run(synth_benchmark, tiny_clip, out, "zero_shot.num_frames=4"))
    )
    assert again["results"][0]["text_embeddings"]["texts_encoded"] == 0
    assert again["results"][0]["metrics"] == result["metrics"]


def test_check_only_command_on_real_files(shared_dir, tmp_path):
    root = shared_dir / "benchmarks" / "ssv2"
    command = [
        sys.executable,
        str(ROOT / "eval.py"),
        "zero_shot=ssv2",
        f"zero_shot.root={root}",
        "check_only=true",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "24,777 clips, 174 classes" in done.stdout and "24,777 missing under" in done.stdout


def test_check_only_suite_reports_every_benchmark(shared_dir, capsys):
    with pytest.raises(EvalError, match="5 of 8 benchmarks did not parse"):
        run_eval(eval_config("zero_shot=all", f"data_root={shared_dir / 'benchmarks'}", "check_only=true"))
    printed = capsys.readouterr().out
    assert "kinetics400: val split, 19,906 clips, 400 classes" in printed
    assert "epic_kitchens_action: validation split, 9,668 clips, 1,352 classes" in printed
    assert f"no annotations file; looked for {shared_dir / 'benchmarks' / 'coin' / 'COIN.json'}," in printed


@pytest.fixture
def damaged(synth_benchmark, tmp_path):  # noqa: F811
    """A copy of the benchmark with two videos deleted and one truncated to garbage."""
    root = tmp_path / "benchmark"
    shutil.copytree(synth_benchmark, root)
    videos = root / "20bn-something-something-v2"
    (videos / "1.mp4").unlink()
    (videos / "2.mp4").unlink()
    (videos / "3.mp4").write_bytes(b"not a video")
    return root


def test_missing_and_broken_videos_fail_unless_allowed(damaged, tiny_clip, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    with pytest.raises(
        EvalError, match=r"synth: 2 of 30 clips reference missing videos .*allow_missing=true"
    ):
        run_eval(eval_config("zero_shot=synth", *clip_run(damaged, tiny_clip, out)))
    summary = run_eval(
        eval_config("zero_shot=synth", *clip_run(damaged, tiny_clip, out, "allow_missing=true"))
    )
    result = summary["results"][0]
    assert result["counts"] == {
        "clips_read": 30,
        "clips_missing": 2,
        "clips_failed": 1,
        "clips_evaluated": 27,
    }
    left_out = [
        json.loads(line) for line in (Path(result["path"]).parent / "left_out.jsonl").read_text().splitlines()
    ]
    assert sorted(item["clip"] for item in left_out) == ["1", "2", "3"]
    (damaged / "20bn-something-something-v2" / "4.mp4").write_bytes(b"broken too")
    shutil.copy(
        damaged / "20bn-something-something-v2" / "5.mp4", damaged / "20bn-something-something-v2" / "1.mp4"
    )
    shutil.copy(
        damaged / "20bn-something-something-v2" / "5.mp4", damaged / "20bn-something-something-v2" / "2.mp4"
    )
    with pytest.raises(EvalError, match=r"synth: 2 of 30 clips could not be decoded .*left_out\.jsonl"):
        run_eval(eval_config("zero_shot=synth", *clip_run(damaged, tiny_clip, out)))
    assert len((Path(result["path"]).parent / "left_out.jsonl").read_text().splitlines()) == 2


def test_suite_prints_the_paper_table(synth_benchmark, tiny_clip, tmp_path, capsys):  # noqa: F811
    (tmp_path / "data" / "synth").mkdir(parents=True)
    (tmp_path / "data" / "synth" / "benchmark").symlink_to(synth_benchmark)
    overrides = clip_run(synth_benchmark, tiny_clip, tmp_path / "runs", f"data_root={tmp_path / 'data'}")
    summary = run_eval(
        eval_config("zero_shot=all", "zero_shot.suite=[synth,synth]", "num_frames=2", *overrides)
    )
    top1 = summary["results"][0]["metrics"]["top1"]
    assert summary["average_top1"] == pytest.approx(top1)
    assert summary["results"][0]["protocol"]["num_frames"] == 2
    assert f"| {100 * top1:.2f}" in capsys.readouterr().out
    written = json.loads(Path(summary["path"]).read_text())
    assert written["average_top1"] == pytest.approx(top1) and written["suite"] == ["synth", "synth"]


def test_retrieval_over_a_caption_list(synth_benchmark, tiny_clip, tmp_path):  # noqa: F811
    entries = json.loads((synth_benchmark / "something-something-v2-validation.json").read_text())
    items = [
        {"video": f"20bn-something-something-v2/{e['id']}.mp4", "caption": e["label"]} for e in entries[:10]
    ]
    (tmp_path / "captions.json").write_text(json.dumps(items))
    overrides = clip_run(tmp_path, tiny_clip, tmp_path / "runs", f"zero_shot.videos={synth_benchmark}")
    result = run_eval(eval_config("zero_shot=captions", *overrides))["results"][0]
    assert {"t2v_r1", "t2v_r5", "t2v_r10", "t2v_median_rank", "v2t_r1", "v2t_median_rank"} <= set(
        result["metrics"]
    )
    assert result["counts"]["clips_evaluated"] == 10 and result["captions_evaluated"] == 10


def test_wandb_logging_makes_an_offline_run(synth_benchmark, tiny_clip, tmp_path, offline_wandb):  # noqa: F811
    overrides = clip_run(synth_benchmark, tiny_clip, tmp_path / "runs", "logger.wandb.enabled=true")
    run_eval(eval_config("zero_shot=synth", *overrides))
    assert len(list((tmp_path / "runs" / "wandb").glob("offline-run-*"))) == 1  # beside the result JSONs


@pytest.fixture(scope="module")
def tiny_vljepa(tmp_path_factory):
    """A tiny VL-JEPA checkpoint in the training checkpoint layout (state_dict + our metadata)."""
    vljepa = pytest.importorskip("action100m.models.vljepa", reason="VL-JEPA (issue 8) not in this checkout")
    from action100m.models.config import ModelConfig

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = vljepa.VLJEPA(ModelConfig(preset="tiny"))
    model.training_data, model.samples_seen = {"scale": 0.5, "samples": 7, "seed": 3}, 64
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    path = tmp_path_factory.mktemp("vljepa") / "tiny.ckpt"
    torch.save(checkpoint, path)
    return path


def test_vljepa_checkpoint_end_to_end(synth_benchmark, tiny_vljepa, tmp_path):  # noqa: F811
    overrides = [
        f"zero_shot.root={synth_benchmark}",
        f"checkpoint={tiny_vljepa}",
        f"output_dir={tmp_path}",
        "cache_dir=null",
        "progress=false",
        "workers=0",
    ]
    result = run_eval(eval_config("zero_shot=synth", *overrides))["results"][0]
    assert result["model"]["kind"] == "vljepa" and result["model"]["checkpoint"] == str(tiny_vljepa)
    assert result["protocol"]["query"] == "What is the action?" and result["protocol"]["num_frames"] == 8
    assert result["counts"]["clips_evaluated"] == SYNTH_CLIPS and result["metrics"]["top1"] is not None
    assert result["train"] == {"scale": 0.5, "samples": 7, "seed": 3, "samples_seen": 64}
    assert [r["_path"] for r in read_results(tmp_path)] == [
        result["path"]
    ]  # the scaling report reads it as is
    asked = run_eval(eval_config("zero_shot=synth", *overrides, "query=What is the object?"))["results"][0]
    assert asked["protocol"]["query"] == "What is the object?"
    with pytest.raises(ConfigError, match="encoder=clip takes none"):
        run_eval(eval_config("zero_shot=synth", *overrides, "encoder=clip", "query=What?"))


def test_several_checkpoints_score_as_alone_on_clips_decoded_once(
    synth_benchmark,  # noqa: F811
    tiny_vljepa,
    tmp_path,
    monkeypatch,
):
    torch = pytest.importorskip("torch")
    from action100m.models.config import ModelConfig
    from action100m.models.vljepa import VLJEPA

    torch.manual_seed(1)
    other = VLJEPA(ModelConfig(preset="tiny"))
    other.training_data, other.samples_seen = {"scale": 1.0, "samples": 14, "seed": 4}, 128
    checkpoint = {"state_dict": other.state_dict()}
    other.on_save_checkpoint(checkpoint)
    second = tmp_path / "second.ckpt"
    torch.save(checkpoint, second)
    common = [f"zero_shot.root={synth_benchmark}", "cache_dir=null", "progress=false", "workers=0"]
    alone = [
        run_eval(
            eval_config("zero_shot=synth", *common, f"checkpoint={path}", f"output_dir={tmp_path / 'alone'}")
        )
        for path in (tiny_vljepa, second)
    ]

    from action100m.eval import data

    decodes = []
    frames = data.ClipDataset.frames
    monkeypatch.setattr(
        data.ClipDataset, "frames", lambda self, clip: decodes.append(clip) or frames(self, clip)
    )
    both = run_eval(
        eval_config(
            "zero_shot=synth",
            *common,
            f"checkpoints=['{tiny_vljepa}','{second}']",
            f"output_dir={tmp_path / 'both'}",
        )
    )
    assert len(decodes) == SYNTH_CLIPS  # once for both checkpoints
    for one, run in zip(alone, both["checkpoints"], strict=True):
        a, b = one["results"][0], run["results"][0]
        assert a["metrics"] == b["metrics"] and a["model"] == b["model"] and a["train"] == b["train"]
        assert b["config"]["checkpoint"] == a["config"]["checkpoint"] and b["config"]["checkpoints"] == []
    assert {r["train"]["seed"] for r in read_results(tmp_path / "both")} == {3, 4}
    with pytest.raises(ConfigError, match="instead of checkpoint="):
        run_eval(eval_config("zero_shot=synth", *common, f"checkpoint={second}", f"checkpoints=['{second}']"))


def test_every_retrieval_benchmark_gives_a_result_json_and_a_scaling_column(tiny_vljepa, tmp_path):
    from tests.eval.retrieval_layouts import write_miniature

    suite = OmegaConf.load(CONFIG_DIR / "zero_shot" / "retrieval_all.yaml").suite
    for name in suite:
        write_miniature(name, tmp_path / "data" / name, videos=3)
    overrides = [
        "zero_shot=retrieval_all",
        f"data_root={tmp_path / 'data'}",
        f"checkpoint={tiny_vljepa}",
        f"output_dir={tmp_path / 'eval'}",
        "cache_dir=null",
        "progress=false",
        "workers=0",
    ]
    summary = run_eval(eval_config(*overrides))
    results = {r["benchmark"]: r for r in summary["results"]}
    assert list(results) == list(suite)
    for name, result in results.items():
        on_disk = json.loads(Path(result["path"]).read_text())
        counts = on_disk["counts"]
        assert on_disk["task"] == "retrieval" and counts["clips_evaluated"] == counts["clips_read"] >= 3, name
        assert set(on_disk["metrics"]) == {
            f"{direction}_{m}"
            for direction in ("t2v", "v2t")
            for m in ("r1", "r5", "r10", "median_rank", "mean_rank")
        }
        protocol = on_disk["protocol"]["retrieval"]
        assert protocol["unit"] in ("clip", "paragraph", "segment") and "ties" in protocol, name
    assert summary["average_t2v_r1"] == pytest.approx(
        sum(r["metrics"]["t2v_r1"] for r in results.values()) / len(results)
    )
    assert summary["average_top1"] is None and "avg t2v R@1" in summary["table"]
    assert "MSR-VTT" in summary["table"] and "DREAM-1K" in summary["table"]
    # the scaling report tables each by its R@1 (the checkpoint records its training scale)
    from action100m.report.scaling import scaling_report

    report = scaling_report(tmp_path / "eval", tmp_path / "report")
    assert {p["benchmark"]: p["metric"] for p in report["points"]}["msrvtt"] == "t2v_r1"
    header = next(
        line for line in (tmp_path / "report" / "scaling.md").read_text().splitlines() if "scale" in line
    )
    assert "| msrvtt |" in header and "(t2v_r1)" not in header  # one metric: its columns need no label
