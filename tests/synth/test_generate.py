import json
import re
from pathlib import Path

import numpy as np
import pytest

from action100m.cli import main
from action100m.dataset.schema import validate_video_uid
from action100m.synth.generate import generate_dataset
from action100m.video import open_video

from .conftest import RUN

# A change a viewer sees: this many pixels moved by more than encoder noise (channel sum > 30).
VISIBLE_PIXELS, NOISE = 10, 30


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).sum(-1) > NOISE).sum())


def test_writes_the_promised_layout(synth_dir, truths):
    manifest = [json.loads(line) for line in (synth_dir / "manifest.jsonl").read_text().splitlines()]
    assert (
        [m["video_uid"] for m in manifest]
        == [t["video_uid"] for t in truths]
        == [f"synth-{i:06d}" for i in range(4)]
    )
    for line, truth in zip(manifest, truths, strict=True):
        validate_video_uid(line["video_uid"])
        assert not Path(line["path"]).is_absolute() and (synth_dir / line["path"]).is_file()
        meta = line["metadata"]
        assert meta["title"].startswith("How to ") and meta["description"]
        assert meta["duration"] == truth["num_frames"] / truth["fps"] == truth["duration"]
        assert re.fullmatch(r"20[12]\d[01]\d[0-3]\d", meta["upload_date"])
        times = [float(chunk["time"]) for chunk in meta["transcript"]]
        assert times == sorted(times) and 0 <= times[0] and times[-1] < meta["duration"]
        for chunk in meta["transcript"]:
            assert re.fullmatch(r"[a-z0-9' ]+", chunk["text"]), chunk
    summary = json.loads((synth_dir / "summary.json").read_text())
    assert summary["videos"] == 4 and summary["benchmark_clips"] == 8 and summary["validation_clips"] == 4
    assert summary["held_out_classes"] == 28 and summary["validation_classes"] == 27


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_videos_decode_with_the_promised_frames_fps_and_size(synth_dir, truths, backend):
    for truth in truths:
        source = open_video(synth_dir / "videos" / f"{truth['video_uid']}.mp4", backend)
        info = source.info
        assert (info.num_frames, info.fps, info.width, info.height) == (truth["num_frames"], 10.0, 128, 128)
        assert source.read_frames([info.num_frames - 1]).shape == (1, 128, 128, 3)


def test_every_ground_truth_boundary_is_visible(synth_dir, truths):
    """A step starts or stops between a still stretch and a moving one: within the half second scored
    as a hit, the moving side departs visibly from the still frame at the boundary, far more than
    encoder noise moves the still side. At a cut the picture changes at once."""
    for truth in truths:
        frames = (
            open_video(synth_dir / "videos" / f"{truth['video_uid']}.mp4")
            .read_frames(range(truth["num_frames"]))
            .numpy()
        )
        fps = truth["fps"]
        window = round(fps / 2)
        for cut in truth["cuts"]:
            k = round(cut * fps)
            assert _changed(frames[k - 1], frames[k]) > 0.1 * frames[k].shape[0] * frames[k].shape[1]
        for step in truth["steps"]:
            start, end = round(step["start"] * fps), round(step["end"] * fps)
            for still, moving in (
                (frames[start - window : start], frames[start : start + window]),
                (frames[end : end + window][::-1], frames[end - window : end][::-1]),
            ):
                reference = still[-1]  # the still frame next to the boundary
                noise = max(_changed(frame, reference) for frame in still)
                change = max(_changed(frame, reference) for frame in moving)
                where = f"{truth['video_uid']} {step['label']} at {step['start']}-{step['end']} s"
                assert change >= VISIBLE_PIXELS and change > 3 * noise, (where, change, noise)


def test_same_seed_same_bytes_other_seed_other_videos_and_video_k_independent_of_n(synth_dir, tmp_path):
    again = generate_dataset(tmp_path / "again", **RUN)  # the library call behind the CLI run
    assert _files(Path(again["out"])) == _files(synth_dir)
    fewer = generate_dataset(tmp_path / "fewer", **{**RUN, "videos": 1, "benchmark_clips": 2})
    fewer_files = _files(Path(fewer["out"]))
    assert fewer_files["videos/synth-000000.mp4"] == (synth_dir / "videos/synth-000000.mp4").read_bytes()
    assert (
        fewer_files["benchmark/20bn-something-something-v2/2.mp4"]
        == (synth_dir / "benchmark/20bn-something-something-v2/2.mp4").read_bytes()
    )
    other = generate_dataset(tmp_path / "other", **{**RUN, "videos": 1, "seed": 1})
    other_video = (Path(other["out"]) / "videos/synth-000000.mp4").read_bytes()
    assert other_video != fewer_files["videos/synth-000000.mp4"]


def test_cli_writes_a_dataset_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["synth", "--out", str(out), "--videos", "2", "--seed", "3", "--size", "96x64", "--fps", "8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("SynthActions: 2 videos") and str(out) in printed
    info = open_video(out / "videos" / "synth-000001.mp4").info
    assert (info.width, info.height, info.fps) == (96, 64, 8.0)
    assert not (out / "benchmark" / "20bn-something-something-v2").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--videos", "-1"], "videos must be at least 1, got -1"),
        (["--benchmark-clips", "-5"], "benchmark clips must be 0 or more, got -5"),
        (["--size", "0"], "size 0x0 outside 32 px per side up to 720p (1280x720)"),
        (["--size", "1920x1080"], "size 1920x1080 outside 32 px per side up to 720p (1280x720)"),
        (["--size", "65"], "size 65x65 must be even on both sides (H.264 4:2:0)"),
        (["--size", "big"], "size must be N or WxH in pixels, got 'big'"),
        (["--fps", "0"], "fps must be between 4 and 30, got 0"),
        (["--seed", "-2"], "seed must be 0 or more, got -2"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    base = {"--out": str(tmp_path / "s"), "--videos": "1", "--seed": "0"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert main(["synth", *[part for pair in base.items() for part in pair]]) == 2
    assert capsys.readouterr().err == f"action100m synth: error: {message}\n"
    assert not (tmp_path / "s").exists()


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["synth", "--out", str(blocker / "s"), "--videos", "1", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"action100m synth: error: cannot write to {blocker / 's'}") and err.count("\n") == 1
    )


def test_non_empty_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["synth", "--out", str(out), "--videos", "1", "--seed", "0", "--size", "64"]
    assert main(args) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only its own outputs are replaced
    assert json.loads((out / "summary.json").read_text())["seed"] == 1


def test_any_number_of_rendering_processes_writes_the_same_bytes(tmp_path):
    run = {"videos": 3, "seed": 5, "benchmark_clips": 3, "validation_clips": 2}
    generate_dataset(tmp_path / "one", **run)
    generate_dataset(tmp_path / "two", **run, workers=2)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 3 + 3 + 2 + 2 * 2 + 3  # videos, clips, split files, manifest, truth, summary
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
