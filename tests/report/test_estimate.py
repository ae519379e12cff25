import json

import pytest

from action100m.cli import main
from action100m.dataset.official import Annotations, from_official
from action100m.dataset.shards import write_tar
from action100m.errors import ConfigError
from action100m.report.estimate import estimate_build, estimate_train, load_estimate_config, windows_per_video
from action100m.report.estimate_inputs import EstimateError, read_results, tree_stats
from data_build.segment import window_starts

# Round throughputs, so that each stage's GPU-seconds per video can be worked out by hand below.
SMALL = [
    "segmentation.source_fps=10",
    "segmentation.windows_per_s=2",
    "tree.leaves_per_hour=100",
    "tree.nodes_per_hour=200",
    "tree.refined_per_hour=50",
    "frame_captioner.media_tokens=990",
    "frame_captioner.text_tokens=10",
    "frame_captioner.output_tokens_per_node=100",
    "frame_captioner.prefill_tokens_per_s=1000",
    "frame_captioner.decode_tokens_per_s=100",
    "segment_captioner.media_tokens=490",
    "segment_captioner.text_tokens=10",
    "segment_captioner.output_tokens_per_node=50",
    "segment_captioner.prefill_tokens_per_s=1000",
    "segment_captioner.decode_tokens_per_s=100",
    "refine.prompt_tokens=1000",
    "refine.answer_tokens=90",
    "refine.reasoning_tokens=110",
    "refine.refine_tokens=10",
    "refine.prefill_tokens_per_s=1100",
    "refine.decode_tokens_per_s=300",
    "train.stages.0.samples_per_s=100",
    "train.stages.1.samples_per_s=8",
    "train.stages.2.samples_per_s=1",
]


def write_results(path, quick=False, **results):
    values = {
        "vitg_windows_per_s": 10.0,
        **{f"vljepa_stage{n}_samples_per_s": rate for n, rate in ((1, 400.0), (2, 64.0), (3, 4.0))},
        "vljepa_stage2_batch": 32,
        "vljepa_stage2_step_s": 0.5,
        "vljepa_stage2_checkpointing": False,
        **results,
    }
    values = {key: value for key, value in values.items() if value is not None}  # None: left out
    path.write_text(json.dumps({"environment": {"gpu": "NVIDIA H200", "quick": quick}, "results": values}))
    return path


def by_stage(report):
    return {stage["stage"]: stage for stage in report["stages"]}


def test_windows_per_video_places_windows_as_the_segment_stage():
    cfg = load_estimate_config(SMALL).segmentation
    for seconds in (0.5, 6.4, 25.6, 26.0, 360.0, 1234.5):
        kept = len(range(0, int(seconds * cfg.source_fps), cfg.frame_step))
        assert windows_per_video(seconds, cfg) == len(window_starts(kept, cfg.window, cfg.window_stride))


def test_build_arithmetic_matches_a_hand_computation():
    # 10 videos of 0.1 h = 360 s. Segmentation: 3,600 frames, 900 kept, windows at 0, 8, ..., 832 (105)
    # and one flush with the end: 106 windows at 2/s = 53 s. Frame captions: 10 leaves x (1,000 prompt
    # tokens at 1,000/s + 100 output at 100/s) = 20 s. Segment captions: 20 nodes x (2 x 500 at 1,000/s
    # + 50 at 100/s) = 30 s. Refinement: 5 nodes x 3 rounds: prefill 1,000 + 1,100 + 1,200 at 1,100/s
    # (15 s) and 3 x 200 output at 300/s (10 s) = 25 s.
    report = estimate_build(load_estimate_config(SMALL), 10, 0.1)
    stages = by_stage(report)
    seconds = {name: stage["gpu_s_per_video"] for name, stage in stages.items()}
    assert seconds == pytest.approx(
        {"segmentation": 53.0, "frame captions": 20.0, "segment captions": 30.0, "refinement": 25.0}
    )
    assert stages["segmentation"]["gpu_hours"] == pytest.approx(530 / 3600)
    assert report["totals_by_gpu"] == pytest.approx({"V100": 1030 / 3600, "H100": 250 / 3600})
    assert report["segmentation + captioning"]["gpu_hours"] == pytest.approx(1030 / 3600)
    sources = {fig["source"] for stage in report["stages"] for fig in stage["figures"]}
    assert sources == {"configured"}
    # The paper's figures, per video and scaled to these 10 videos.
    paper = report["paper"]["refinement"]
    assert paper["gpu_s_per_video"] == pytest.approx(900) and paper["gpu_hours_at_these_videos"] == 2.5

    cached = by_stage(estimate_build(load_estimate_config([*SMALL, "refine.prefix_caching=true"]), 10, 0.1))
    # Only each round's new tokens are prefilled: 5 x (1,000 + 2 x 100) at 1,100/s, + the same 10 s.
    assert cached["refinement"]["gpu_s_per_video"] == pytest.approx(6000 / 1100 + 10)


def test_results_replace_segmentation_and_training_figures_and_say_measured(tmp_path):
    results = read_results(write_results(tmp_path / "r.json"))
    cfg = load_estimate_config(SMALL)
    stage = by_stage(estimate_build(cfg, 10, 0.1, results))["segmentation"]
    assert stage["gpu_s_per_video"] == pytest.approx(10.6)  # 106 windows at 10/s
    assert stage["gpu"] == {"name": "gpu", "value": "NVIDIA H200", "unit": "", "source": "measured: r.json"}
    assert [f["source"] for f in stage["figures"] if f["name"] == "windows/s"] == ["measured: r.json"]

    # The paper's mix (2.4576B, 0.73728B, 0.12288B samples) at 100, 8 and 1 samples/s per GPU.
    configured = estimate_train(cfg, 4)
    hours = [2.4576e9 / 100 / 3600, 7.3728e8 / 8 / 3600, 1.2288e8 / 1 / 3600]
    assert [s["gpu_hours"] for s in configured["stages"]] == pytest.approx(hours)
    assert configured["gpu_hours"] == pytest.approx(sum(hours))
    assert configured["wall_clock_hours"] == pytest.approx(sum(hours) / 4)
    # --samples-seen splits a total in the same proportions; --stage-samples sets each stage.
    scaled = estimate_train(cfg, 4, samples_seen=3.31776e9 / 1000)
    assert scaled["gpu_hours"] == pytest.approx(sum(hours) / 1000)
    train = estimate_train(cfg, 4, results, per_stage=[0, 6400, 400])
    # Stage 2 at 64 samples/s: 100 s; stage 3 at 4 samples/s: 100 s; stage 1 has no samples.
    assert [s["gpu_hours"] for s in train["stages"]] == pytest.approx([0, 100 / 3600, 100 / 3600])
    assert {s["rate"]["source"] for s in train["stages"]} == {"measured: r.json"}
    assert train["stages"][1]["rate"]["unit"] == "batch 32, 0.5 s/step, activation checkpointing off"
    assert train["totals_by_gpu"] == pytest.approx({"NVIDIA H200": 200 / 3600})


def test_a_stage_the_results_lack_keeps_its_configured_rate_with_a_warning(tmp_path, capsys):
    # stage 3's sweeps were cut by the time budget: the run wrote no headline for it
    path = write_results(
        tmp_path / "r.json",
        vljepa_stage3_samples_per_s=None,
        vljepa_stage3_nockpt_stopped="time budget",
        vljepa_stage3_ckpt_stopped="time budget",
    )
    assert main(["estimate", "train", "--from", str(path), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        "WARNING: r.json has no 'vljepa_stage3_samples_per_s'; its sweeps stopped: time budget "
        "(vljepa_stage3_nockpt_stopped), time budget (vljepa_stage3_ckpt_stopped): stage 3 keeps the "
        "configured rate\n"
    )
    rows = {line.split()[1]: line for line in printed.splitlines() if line.startswith("stage ")}
    assert rows["1"].endswith("[measured: r.json]") and rows["3"].endswith("[configured]")
    assert "total NVIDIA H200" in printed and "total H200" in printed  # one total per GPU

    # segmentation alike: a sweep cut by time left no windows/s, so the build keeps the configured one
    path = write_results(tmp_path / "r.json", vitg_windows_per_s=None, vitg_stopped="time budget")
    assert (
        main(["estimate", "build", "--videos", "10", "--hours-per-video", "0.1", "--from", str(path), *SMALL])
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith(
        "WARNING: r.json has no 'vitg_windows_per_s'; its sweeps stopped: time budget (vitg_stopped): "
        "segmentation keeps the configured rate\n"
    )
    assert "segmentation           V100 [configured]" in printed


def test_stage_samples_must_match_the_stages(capsys):
    assert main(["estimate", "train", "--stage-samples", "1", "2"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--stage-samples takes 3 numbers >= 0 (one per stage), not all 0")
    )
    with pytest.raises(SystemExit, match="2"):
        main(["estimate", "train", "--stage-samples", "1", "2", "3", "--samples-seen", "5"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vitg_windows_per_s": "fast"}, "'results.vitg_windows_per_s' must be a positive float, got 'fast'"),
        ({"vitg_windows_per_s": True}, "'results.vitg_windows_per_s' must be a positive float, got True"),
        (
            {"vljepa_stage2_samples_per_s": "fast"},
            "'results.vljepa_stage2_samples_per_s' must be a positive float, got 'fast'",
        ),
        (
            {"vljepa_stage1_samples_per_s": 0},
            "'results.vljepa_stage1_samples_per_s' must be a positive float, got 0",
        ),
    ],
)
def test_bad_results_are_one_line_errors_naming_file_and_key(tmp_path, capsys, change, message):
    path = write_results(tmp_path / "r.json", **change)
    action = "build" if "vitg" in message else "train"
    args = ["--videos", "1", "--hours-per-video", "0.1"] if action == "build" else []
    assert main(["estimate", action, *args, "--from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"action100m estimate {action}: error: {path}: {message}\n"


def test_unreadable_or_incomplete_results_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EstimateError, match="bad.json: cannot read results"):
        read_results(bad)
    bad.write_text(json.dumps({"environment": {"quick": False}, "results": {}}))
    with pytest.raises(EstimateError, match="'environment.gpu' is missing"):
        read_results(bad)
    bad.write_text(json.dumps({"environment": {"gpu": "A100"}}))
    with pytest.raises(EstimateError, match="'results' is missing"):
        read_results(bad)


def test_quick_results_are_refused_unless_allowed_and_then_flagged(tmp_path, capsys):
    path = write_results(tmp_path / "quick.json", quick=True)
    assert main(["estimate", "build", "--videos", "1", "--hours-per-video", "0.1", "--from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made with --quick" in err and "--allow-quick" in err
    args = ["estimate", "train", "--samples-seen", "10", "--from", str(path), "--allow-quick"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("WARNING: the results file was made with --quick")
    assert "[measured: quick.json (QUICK: reduced models)]" in printed


def test_config_errors_are_one_line(capsys):
    with pytest.raises(ConfigError, match="must be positive"):
        load_estimate_config(["refine.decode_tokens_per_s=0"])
    assert main(["estimate", "train", "--samples-seen", "10", "train.nope=1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_prints_the_table_and_writes_the_same_json_bytes(tmp_path, capsys):
    out = tmp_path / "est" / "build.json"
    args = ["estimate", "build", "--videos", "1200000", "--hours-per-video", "0.107", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for text in ("segmentation", "frame captions", "segment captions", "refinement", "total V100"):
        assert text in printed
    paper = [line.split() for line in printed.splitlines() if line.startswith("  paper")]
    assert paper == [["paper", "V100", "3,900.0", "1,300,000"], ["paper", "H100", "900.0", "300,000"]]
    assert "[configured]" in printed and "[measured" not in printed
    first = out.read_bytes()
    assert json.loads(first)["videos"] == 1_200_000
    assert main(args) == 0
    assert out.read_bytes() == first
    assert [p.name for p in out.parent.iterdir()] == ["build.json"]  # no temp file left beside it

    assert (
        main(["estimate", "build", "--videos", "1", "--hours-per-video", "0.1", "--out", str(tmp_path)]) == 2
    )
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_train_prints_gpu_hours_and_wall_clock(capsys):
    args = ["estimate", "train", "--samples-seen", "3.3e9", "--gpus", "192"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    # The configured rate is the paper's own: about its 129,024 H200-h, 4 weeks on 192 GPUs.
    assert "total H200" in printed and printed.count("[configured]") == 3
    assert "wall-clock on 192 GPUs: 672.4 h (28.0 days)" in printed
    assert main(["estimate", "train"]) == 0  # the paper's stage mix: 3.32B samples
    printed = capsys.readouterr().out
    rows = [
        line.split() for line in printed.splitlines() if line.startswith(("stage 1", "stage 2", "stage 3"))
    ]
    assert [row[4] for row in rows] == ["2,457,600,000", "737,280,000", "122,880,000"]
    assert [row[-2] for row in rows] == ["96,150", "28,845", "4,808"]


def test_tree_measures_node_counts_and_tokens(official_sample, tmp_path):
    tree = tree_stats(official_sample, 4.0)
    # The same record in a shard set measures the same tree.
    record = from_official(Annotations(official_sample).rows([0])[0])
    write_tar(tmp_path / "shards" / "a.tar", [(record.video_uid, {"json": record.to_json().encode()})])
    (tmp_path / "shards" / "a.tar.done").touch()
    assert tree_stats(tmp_path, 4.0) == tree
    with pytest.raises(EstimateError, match="cannot read the tree"):
        tree_stats(tmp_path / "nothing", 4.0)
    assert tree["videos"] == 1 and tree["nodes_per_hour"] == pytest.approx(917 / 689.83 * 3600, rel=1e-4)
    assert tree["refine_prompt_tokens"] > 1000
    report = estimate_build(load_estimate_config(), 10, 0.1, tree=tree)
    refined = by_stage(report)["refinement"]["figures"][0]
    assert refined["name"] == "refined nodes/hour" and refined["source"] == "measured: tree"
    assert refined["value"] == pytest.approx(262 / 689.83 * 3600, rel=1e-4)


def test_captioners_are_costed_on_the_build_tasks_gpu_and_the_llm_on_its_servers(tmp_path, capsys):
    # build=paper: segmentation and both captioners share the build task's GPU; refinement is on vLLM.
    report = estimate_build(load_estimate_config(SMALL), 10, 0.1)
    assert {s["stage"]: s["gpu"]["value"] for s in report["stages"]} == {
        "segmentation": "V100",
        "frame captions": "V100",
        "segment captions": "V100",
        "refinement": "H100",
    }
    places = report["places"]
    assert places["build tasks"]["stages"] == ["segmentation", "frame captions", "segment captions"]
    assert places["build tasks"]["gpu_s_per_video"] == pytest.approx(53 + 20 + 30)
    assert places["servers"] == {
        "gpu": "H100",
        "stages": ["refinement"],
        "gpu_s_per_video": pytest.approx(25.0),
        "gpu_hours": pytest.approx(250 / 3600),
    }
    # measured on an H200: the build task's GPU is the measured one, the captioners' with it
    measured = estimate_build(
        load_estimate_config(SMALL), 10, 0.1, read_results(write_results(tmp_path / "r.json"))
    )
    gpus = {s["stage"]: s["gpu"] for s in measured["stages"]}
    assert gpus["frame captions"] == gpus["segment captions"] == gpus["segmentation"]
    assert gpus["segment captions"]["value"] == "NVIDIA H200"
    assert gpus["segment captions"]["source"] == "measured: r.json"
    # a captioner moved to a server of its own kind of GPU is costed there
    served = estimate_build(load_estimate_config([*SMALL, "frame_captioner.gpu=A100"]), 10, 0.1)
    assert served["places"]["servers"]["stages"] == ["frame captions", "refinement"]
    assert main(["estimate", "build", "--videos", "10", "--hours-per-video", "0.1", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert (
        "build tasks            V100" in printed
        and "segmentation + frame captions + segment captions" in printed
    )
