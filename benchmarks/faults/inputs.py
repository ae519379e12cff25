"""Bad, hostile and unusual inputs through the real commands (project issue 17, `make reliability`).

Every case runs the command a user would type (build, official import, stats, train, eval) in a
subprocess with a timeout, and states what it expects: a clear error on stderr naming the file, video
or key (no traceback, non-zero exit), a failure recorded in failures.jsonl while every good input of
the same run is built, or (unusual but valid videos) a built sample. A full output disk is a tiny
tmpfs (or, where mounting is not allowed, RLIMIT_FSIZE in the child).

    python benchmarks/faults/inputs.py --quick

Ends with `RESULT bad_kinds=.. crashes=.. lost=.. odd_videos_built=.. disk_full=..`; exits 1 on any
crash (a traceback, a timeout, a wrong outcome) or loss (a good input missing from the output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402

from action100m.dataset.shards import read_tar  # noqa: E402
from action100m.synth.generate import generate_dataset  # noqa: E402
from action100m.video import open_video  # noqa: E402
from action100m.video.pattern import moving_square_frames  # noqa: E402
from action100m.video.writer import write_video  # noqa: E402
from tests.dataset.test_shards import GOOD_JSON, HOSTILE, forged_size_tar, hostile_tar  # noqa: E402
from tests.video.kinds import KINDS, write_audio_only, write_kind  # noqa: E402

PYTHON = sys.executable
BUILD = [PYTHON, str(ROOT / "data_build" / "build.py")]
CLI = [PYTHON, "-m", "action100m.cli"]
TRAIN = [PYTHON, str(ROOT / "train.py")]
EVAL = [PYTHON, str(ROOT / "eval.py")]
# The cheapest build that still reads every kept frame: pixel features, two videos a shard.
FAST = ["segment.features=pixel", "samples_per_shard=2", "progress=false"]
GOOD = ("synth-000000", "synth-000001")
# Cases that repeat another's path through the code, left out by --quick (each costs a process start).
FULL_ONLY = {
    "manifest_not_object",
    "ckpt_not_ours",
    "train_typo_key",
    "train_unknown_group_option",
    "eval_unknown_group_option",
    "eval_wrong_type",
}


@dataclass
class Ran:
    """One finished (or timed-out) command."""

    argv: list[str]
    code: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    def last_line(self) -> str:
        """The error line: the last saying "error:" (a progress bar may close after it), else the last."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "error:" in line]
        return (errors or lines or [""])[-1]


def run(
    argv: Sequence[str], timeout: float = 180, env_extra: dict[str, str] | None = None, **options: Any
) -> Ran:
    """`argv` from the repo root, offline, killed at `timeout`; `options` go to subprocess.run."""
    start = time.perf_counter()
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        **(env_extra or {}),
    }
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, **options
        )
        return Ran(list(argv), done.returncode, done.stdout, done.stderr, time.perf_counter() - start)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        errs = err.stderr.decode() if isinstance(err.stderr, bytes) else err.stderr or ""
        return Ran(list(argv), None, out, errs, time.perf_counter() - start)


@dataclass
class Case:
    group: str
    name: str
    expected: str
    got: str = ""
    ok: bool = False
    lost: int = 0
    odd: bool = False  # a valid-but-unusual video (counted apart from the bad kinds)
    seconds: float = 0.0  # the command's; a run that held many cases counts on its first

    def line(self) -> str:
        return f"{'ok   ' if self.ok else 'CRASH'} {self.group}/{self.name}: expected {self.expected}; got {self.got}"


@dataclass
class Report:
    cases: list[Case] = field(default_factory=list)

    def add(self, case: Case) -> Case:
        self.cases.append(case)
        return case


def check_error(case: Case, ran: Ran, *needles: str, one_line: bool = True) -> Case:
    """Expect a non-zero exit, no traceback, and an error line naming every needle.

    `one_line=False`: Hydra's own override errors, which span a few lines (never a traceback)."""
    case.seconds = ran.seconds
    if ran.code is None:
        case.got = f"timeout after {ran.seconds:.0f} s"
        return case
    if ran.traceback:
        case.got = f"traceback: {ran.last_line()[:160]}"
        return case
    text = ran.last_line() if one_line else ran.stderr
    named = all(needle in text for needle in needles)
    case.ok = ran.code != 0 and named
    shown = text if one_line else " | ".join(line for line in text.splitlines()[:2] if line.strip())
    case.got = f"exit {ran.code}: {shown[:170]}" + ("" if named else f" (does not name {needles})")
    return case


def failures_of(out: Path) -> dict[str, list[dict]]:
    by_video: dict[str, list[dict]] = {}
    path = out / "failures.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        failure = json.loads(line)
        by_video.setdefault(str(failure["video_uid"]), []).append(failure)
    return by_video


def shard_digests(out: Path) -> dict[str, str]:
    """key → sha256 of its files, over the finished shards."""
    digests = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        if Path(f"{tar}.done").is_file():
            for key, files in read_tar(tar):
                digests[key] = hashlib.sha256(b"".join(files[ext] for ext in sorted(files))).hexdigest()
    return digests


def check_run_cases(
    report: Report,
    group: str,
    ran: Ran,
    out: Path,
    expected: Sequence[tuple[str, str, str, str]],
    good: Sequence[str],
) -> None:
    """One run that held many cases: each (name, uid, expected, needle) is judged from failures.jsonl
    and the shards. "failure": a failure of uid naming needle, and uid not in the shards (unless it is
    one of the good ones, which a duplicate repeats); "built": uid in the shards. A crash of the run is
    a crash of each case; good videos missing from the shards are lost."""
    crashed = ran.code is None or ran.traceback
    built = {} if crashed else shard_digests(out)
    failures = failures_of(out)
    for k, (name, uid, want, needle) in enumerate(expected):
        case = report.add(Case(group, name, want if want == "built" else f"failure '{needle}'"))
        case.seconds = 0.0 if k else ran.seconds
        if crashed:
            case.got = f"the run crashed: {'timeout' if ran.code is None else ran.last_line()[:160]}"
            continue
        reasons = [f["reason"] for f in failures.get(uid, [])]
        if want == "built":
            case.ok = uid in built
            case.got = (
                "built" if case.ok else f"not built: {'; '.join(reasons)[:160] or 'no failure recorded'}"
            )
        else:
            hit = [r for r in reasons if needle in r]
            case.ok = bool(hit) and (uid not in built or uid in good)
            case.got = f"failure: {(hit or reasons or ['none recorded'])[0][:160]}"
    missing = [uid for uid in good if uid not in built]
    if missing:
        report.add(Case(group, "good inputs", "all built", f"lost {missing}", lost=len(missing)))


# -- inputs --------------------------------------------------------------------------------------------


def zero_frame_video(path: Path) -> Path:
    """A well-formed mp4 with a video stream that holds no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # the header and an empty index, without any frame
        container.mux(stream.encode())
    return path


def huge_declared(path: Path, good: Path) -> Path:
    """The good video with its track header and sample entry claiming 65535x65535 pixels."""
    data = bytearray(good.read_bytes())
    tkhd = data.find(b"tkhd")
    # tkhd (version 0) ends with width and height as 16.16 fixed point
    size = struct.unpack(">I", data[tkhd - 4 : tkhd])[0]
    end = tkhd - 4 + size
    data[end - 8 : end] = struct.pack(">II", 0xFFFF << 16, 0xFFFF << 16)
    avc1 = data.find(b"avc1")
    data[avc1 + 28 : avc1 + 32] = struct.pack(">HH", 0xFFFF, 0xFFFF)  # after 24 bytes of fixed fields
    path.write_bytes(bytes(data))
    return path


def bad_videos(folder: Path, good: Path) -> dict[str, tuple[Path | str, str]]:
    """uid → (path as the manifest gives it, the failure reason expected to name it)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "text.mp4").write_text("not a video\n" * 100)
    (folder / "dir.mp4").mkdir(exist_ok=True)
    for a, b in (("loop_a.mp4", "loop_b.mp4"), ("loop_b.mp4", "loop_a.mp4")):
        if not (folder / a).is_symlink():
            (folder / a).symlink_to(folder / b)
    if not (folder / "dangling.mp4").is_symlink():
        (folder / "dangling.mp4").symlink_to(folder / "gone.mp4")
    if not (folder / "fifo.mp4").exists():
        os.mkfifo(folder / "fifo.mp4")  # open() on a pipe nobody writes blocks: a hang if read blindly
    write_video(folder / "one_frame.mp4", moving_square_frames(1), fps=10)
    write_video(folder / "fast.mp4", moving_square_frames(40), fps=1000)
    write_video(folder / "wide.mp4", moving_square_frames(4, 16, 4096), fps=10)
    return {
        "empty": (folder / "empty.mp4", "empty"),
        "random_bytes": (folder / "random.mp4", "random.mp4"),
        "truncated": (folder / "truncated.mp4", "truncated.mp4"),
        "text": (folder / "text.mp4", "text.mp4"),
        "zero_frames": (zero_frame_video(folder / "zero.mp4"), "no video stream"),
        "huge_declared": (huge_declared(folder / "huge.mp4", good), ""),
        "audio_only": (write_audio_only(folder / "audio.mp4"), "no video stream"),
        "one_frame": (folder / "one_frame.mp4", "fewer than two kept frames"),
        "fps_1000": (folder / "fast.mp4", "frame rate 1000"),
        "over_max_pixels": (folder / "wide.mp4", "max_pixels"),
        # named for what is there instead of a file; a named pipe is never opened, so nothing waits
        "directory_mp4": (folder / "dir.mp4", "a directory, not a file"),
        "symlink_loop": (folder / "loop_a.mp4", "a symlink loop"),
        "dangling_symlink": (folder / "dangling.mp4", "a broken symlink"),
        "named_pipe": (folder / "fifo.mp4", "not a regular file (named pipe)"),
        "missing": (folder / "missing.mp4", "no such file"),
        "absolute_path_not_video": ("/etc/hostname", "/etc/hostname"),
    }


def write_manifest(path: Path, entries: Sequence[dict | str]) -> Path:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries))
    return path


def entry(uid: Any, path: Path | str) -> dict:
    return {"video_uid": uid, "path": str(path), "metadata": {}}


# -- groups --------------------------------------------------------------------------------------------


@dataclass
class Setup:
    work: Path
    synth: Path  # a SynthActions folder: manifest, ground truth, two good videos
    good_built: Path  # a build of the good videos alone (the reference for disk-full and the shards cases)


def make_setup(work: Path) -> Setup:
    synth = work / "synth"
    generate_dataset(synth, videos=2, seed=5, size=64, benchmark_clips=4)
    good_built = work / "good_build"
    ran = run([*BUILD, f"input={synth / 'manifest.jsonl'}", f"output={good_built}", *FAST])
    if ran.code != 0:
        raise SystemExit(f"inputs: the good build failed:\n{ran.stderr[-2000:]}")
    return Setup(work, synth, good_built)


def good_entries(setup: Setup) -> list[dict]:
    return [entry(uid, setup.synth / "videos" / f"{uid}.mp4") for uid in GOOD]


def build_bad_videos_and_records(report: Report, setup: Setup) -> None:
    """One build whose manifest holds the good videos, every bad video and every bad record kind."""
    folder = setup.synth / "bad"
    videos = bad_videos(folder / "videos", setup.synth / "videos" / "synth-000000.mp4")
    good = setup.synth / "videos" / "synth-000001.mp4"
    records = {
        "uid_slash": ("a/b", good, "invalid video_uid"),
        "uid_dotdot": ("..", good, "invalid video_uid"),
        "uid_empty": ("", good, "invalid video_uid"),
        "uid_newline": ("x\ny", good, "invalid video_uid"),
        "uid_long": ("x" * 300, good, "invalid video_uid"),
        "uid_null": (None, good, "invalid video_uid"),
        "uid_list": (["x"], good, "invalid video_uid"),
        "duplicate_uid": ("synth-000000", setup.synth / "videos" / "synth-000000.mp4", "duplicate video_uid"),
    }
    entries = good_entries(setup)
    entries += [entry(uid, path) for uid, (path, _) in videos.items()]
    entries += [entry(uid, path) for uid, path, _ in records.values()]
    # a `..` path that leads to a real video is a valid input: the user named that file
    entries.append(entry("dotdot_path", Path("..") / "videos" / "synth-000001.mp4"))
    manifest = write_manifest(folder / "manifest.jsonl", entries)
    out = setup.work / "bad_build"
    # the demo's describer captions only SynthActions videos: the re-muxed one gets its source's truth
    truth_rows = (setup.synth / "ground_truth.jsonl").read_text().splitlines()
    copy = json.dumps({**json.loads(truth_rows[0]), "video_uid": "huge_declared"})
    (folder / "ground_truth.jsonl").write_text("\n".join([*truth_rows, copy]) + "\n")
    truth = f"ground_truth={folder / 'ground_truth.jsonl'}"
    ran = run([*BUILD, f"input={manifest}", f"output={out}", *FAST, truth, "max_pixels=50000"], timeout=240)
    # a header that lies about the size: the decoders read the stream's own 64x64
    expected = [(uid, uid, "failure", needle) for uid, (_, needle) in videos.items() if needle]
    expected.append(("huge_declared", "huge_declared", "built", ""))
    expected += [(name, str(uid), "failure", needle) for name, (uid, _, needle) in records.items()]
    expected.append(("dotdot_path", "dotdot_path", "built", ""))
    check_run_cases(report, "build", ran, out, expected, [*GOOD, "dotdot_path", "huge_declared"])


def build_manifest_errors(report: Report, setup: Setup, quick: bool) -> None:
    """Inputs the build cannot start on: one line naming the manifest line or the path, exit 2."""
    folder = setup.work / "manifests"
    folder.mkdir(exist_ok=True)
    good = json.dumps(good_entries(setup)[0])
    manifests = {
        "manifest_invalid_json": ([good, '{"video_uid": "x", "path": '], "line 2"),
        "manifest_missing_key": ([good, '{"video_uid": "x"}'], "line 2"),
        "manifest_not_object": ([good, "[1, 2]"], "line 2"),
        "manifest_binary": (None, "manifest_binary.jsonl"),
    }
    for name, (lines, needle) in manifests.items():
        if quick and name in FULL_ONLY:
            continue
        path = folder / f"{name}.jsonl"
        if lines is None:
            path.write_bytes(b"\xff\xfe\x00garbage\x80")
        else:
            write_manifest(path, lines)
        ran = run([*BUILD, f"input={path}", f"output={folder / name}", *FAST])
        check_error(report.add(Case("build", name, f"error naming '{needle}'")), ran, needle)
    missing = folder / "nope.jsonl"
    ran = run([*BUILD, f"input={missing}", f"output={folder / 'nope'}", *FAST])
    check_error(report.add(Case("build", "input_missing", "error naming the input")), ran, str(missing))
    (folder / "a_file").write_text("x")
    manifest = setup.synth / "manifest.jsonl"
    ran = run([*BUILD, f"input={manifest}", f"output={folder / 'a_file'}", *FAST])
    check_error(report.add(Case("build", "output_is_a_file", "error naming the output")), ran, "a_file")


def build_unreadable(report: Report, setup: Setup) -> None:
    """A video its reader may not open (mode 000). Root reads any file, so as root the build runs
    without the capabilities that bypass file permissions (setpriv drops them for good)."""
    folder = setup.work / "unreadable"
    folder.mkdir(exist_ok=True)
    good = folder / "synth-000000.mp4"
    shutil.copyfile(setup.synth / "videos" / "synth-000000.mp4", good)
    locked = folder / "locked.mp4"
    shutil.copyfile(good, locked)
    locked.chmod(0)
    shutil.copyfile(setup.synth / "ground_truth.jsonl", folder / "ground_truth.jsonl")
    manifest = write_manifest(
        folder / "manifest.jsonl", [entry("synth-000000", good), entry("locked", locked)]
    )
    drop = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"] if os.geteuid() == 0 else []
    out = folder / "out"
    ran = run([*prefix, *BUILD, f"input={manifest}", f"output={out}", *FAST])
    expected = [("unreadable_permissions", "locked", "failure", "ermission denied")]
    check_run_cases(report, "build", ran, out, expected, ["synth-000000"])


# -- official import ----------------------------------------------------------------------------------


def official_row(uid: Any) -> dict:
    node = {
        "node_id": f"{uid}-root",
        "parent_id": None,
        "level": 0,
        "start": 0.0,
        "end": 3.0,
        "plm_action": "stir",
        "plm_caption": "a bowl",
        "llama3_caption": "a bowl",
        "gpt": None,
    }
    return {"video_uid": uid, "metadata": {"title": str(uid), "duration": 3}, "nodes": [node]}


def official_videos(setup: Setup) -> Path:
    """The folder of the official import's videos: the two good ones under their uids."""
    folder = setup.work / "official_videos"
    folder.mkdir(exist_ok=True)
    for uid in GOOD:
        if not (folder / f"{uid}.mp4").is_file():
            shutil.copyfile(setup.synth / "videos" / f"{uid}.mp4", folder / f"{uid}.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return folder


def import_command(annotations: Path, videos: Path, out: Path) -> list[str]:
    return [
        *CLI,
        "official",
        "import",
        "--annotations",
        str(annotations),
        "--videos",
        str(videos),
        "--out",
        str(out),
    ]


def official_cases(report: Report, setup: Setup) -> None:
    folder = setup.work / "official"
    folder.mkdir(exist_ok=True)
    videos = official_videos(setup)
    # whole files the import cannot read: one line naming the file
    (folder / "not_parquet.parquet").write_text("PAR1 but not really")
    (folder / "not_json.json").write_text('{"video_uid": ["a"], ')
    (folder / "wrong_types.json").write_text(json.dumps({"video_uid": 7, "metadata": "x", "nodes": 3}))
    (folder / "not_a_table.json").write_text(json.dumps([1, 2, 3]))
    (folder / "cut.jsonl").write_text(
        "".join(json.dumps(official_row(uid)) + "\n" for uid in GOOD) + '{"video_uid": "cut", "nodes": [\n'
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uid": ["a"]}), folder / "no_uid.parquet")
    whole = {
        "parquet_not_parquet": ("not_parquet.parquet", "not_parquet.parquet"),
        "parquet_no_video_uid": ("no_uid.parquet", "no video_uid column"),
        "json_not_json": ("not_json.json", "not_json.json"),
        "jsonl_one_row_not_json": ("cut.jsonl", "cut.jsonl line 3: not JSON"),
    }
    for name, (file, needle) in whole.items():
        ran = run(import_command(folder / file, videos, folder / f"out_{name}"), timeout=120)
        check_error(report.add(Case("official", name, f"error naming '{needle}'")), ran, needle)

    # files of the wrong shape: each row a failure, nothing built
    for name, file, uid, needle in (
        ("json_wrong_types", "wrong_types.json", "7", "invalid video_uid"),
        ("json_not_a_table", "not_a_table.json", "?", "must be an object"),
    ):
        out = folder / f"out_{name}"
        ran = run(import_command(folder / file, videos, out), timeout=120)
        check_run_cases(report, "official", ran, out, [(name, uid, "failure", needle)], [])

    # rows the import records as failures while the good rows are built: one run for all of them
    bad_level = official_row("bad_level")
    bad_level["nodes"][0]["level"] = 1
    no_nodes = official_row("no_nodes")
    del no_nodes["nodes"]
    string_nodes = {**official_row("string_nodes"), "nodes": "x"}
    string_end = official_row("string_end")
    string_end["nodes"][0]["end"] = "3.0"
    rows: list[Any] = [official_row(uid) for uid in GOOD]
    rows += [bad_level, no_nodes, string_nodes, string_end, official_row("../x"), official_row("/etc/passwd")]
    rows += [official_row("synth-000000"), official_row("missing_video"), official_row("broken")]
    annotations = write_manifest(folder / "release.jsonl", rows)
    out = folder / "out_rows"
    ran = run(import_command(annotations, videos, out), timeout=120)
    expected = [
        ("row_bad_level", "bad_level", "failure", "level 1"),
        ("row_no_nodes", "no_nodes", "failure", "invalid record"),
        ("row_nodes_not_a_list", "string_nodes", "failure", "invalid record"),
        ("row_end_a_string", "string_end", "failure", "invalid record"),
        ("row_uid_dotdot", "../x", "failure", "invalid video_uid"),
        ("row_uid_absolute", "/etc/passwd", "failure", "invalid video_uid"),
        ("row_duplicate_uid", "synth-000000", "failure", "duplicate video_uid"),
        ("row_video_missing", "missing_video", "failure", "no video in"),
        ("row_video_broken", "broken", "failure", "unreadable video"),
    ]
    check_run_cases(report, "official", ran, out, expected, GOOD)


# -- shards -------------------------------------------------------------------------------------------


def shard_set_with(setup: Setup, name: str, tar: Callable[[Path], Path]) -> Path:
    """A copy of the good shard set with one more finished shard, written by `tar`."""
    root = setup.work / "shard_sets" / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(setup.good_built / "shards", root / "shards")
    path = tar(root / "shards" / "action100m-000099.tar")
    shutil.copyfile(next((root / "shards").glob("*.done")), f"{path}.done")
    return root


def truncated_shard(path: Path, setup: Setup) -> Path:
    whole = next((setup.good_built / "shards").glob("*.tar")).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def shard_cases(report: Report, setup: Setup, quick: bool) -> None:
    """The hostile tars of tests/dataset/test_shards.py in a shard set, through `action100m stats`;
    one of them (--quick) or all through the training plan too."""
    sets: dict[str, tuple[Callable[[Path], Path], str]] = {
        f"tar_{kind.replace(' ', '_')}": (
            lambda p, bad=bad: hostile_tar(p, GOOD_JSON, bad),
            pattern.split(":")[0].replace("\\", ""),
        )
        for kind, (bad, pattern) in sorted(HOSTILE.items())
    }
    sets["tar_forged_size"] = (lambda p: forged_size_tar(p, "vid-0.mp4", 1 << 30), "truncated shard")
    sets["tar_over_limit"] = (lambda p: forged_size_tar(p, "vid-0.mp4", 5 << 30), "over the 4 GiB limit")
    sets["tar_truncated"] = (lambda p: truncated_shard(p, setup), "truncated shard")
    sets["tar_random_bytes"] = (
        lambda p: (p.write_bytes(np.random.default_rng(1).bytes(3000)), p)[1],
        "action100m-000099.tar",
    )
    for name, (write, needle) in sets.items():
        root = shard_set_with(setup, name, write)
        ran = run([*CLI, "stats", str(root)], timeout=120)
        check_error(
            report.add(Case("stats", name, f"error naming the shard and '{needle}'")),
            ran,
            "action100m-000099.tar",
            needle,
        )
    for name in ("tar_symlink",) if quick else sets:
        root = setup.work / "shard_sets" / name
        ran = run(
            [*TRAIN, f"data.shards={root}", "logger=csv", f"output_dir={setup.work / 'train'}"], timeout=180
        )
        check_error(
            report.add(Case("train", f"plan_{name}", "error naming the shard")), ran, "action100m-000099.tar"
        )


# -- checkpoints -------------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs a shell command: a checkpoint must be loaded with weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def checkpoint_cases(report: Report, setup: Setup, quick: bool) -> None:
    import torch

    from action100m.models.config import model_preset
    from action100m.models.vljepa import VLJEPA

    folder = setup.work / "checkpoints"
    folder.mkdir(exist_ok=True)
    torch.manual_seed(0)
    model = VLJEPA(model_preset("tiny"))
    checkpoint: dict[str, Any] = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    good = folder / "good.ckpt"
    torch.save(checkpoint, good)
    data = good.read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (folder / "random.ckpt").write_bytes(np.random.default_rng(2).bytes(50000))
    marker = folder / "code_ran"
    marker.unlink(missing_ok=True)
    torch.save({"state_dict": RunsCode(marker)}, folder / "code.ckpt")
    torch.save({"state_dict": {}}, folder / "foreign.ckpt")
    checkpoint["action100m"] = {
        **checkpoint["action100m"],
        "model": {**checkpoint["action100m"]["model"], "preset": "vljepa_paper"},
    }
    torch.save(checkpoint, folder / "other_preset.ckpt")
    benchmark = [
        f"zero_shot.root={setup.synth / 'benchmark'}",
        "zero_shot=synth",
        "workers=0",
        "progress=false",
    ]
    cases = {
        "ckpt_truncated": ("truncated.ckpt", "unreadable"),
        "ckpt_random_bytes": ("random.ckpt", "unreadable"),
        "ckpt_code_in_pickle": ("code.ckpt", "unreadable"),
        "ckpt_not_ours": ("foreign.ckpt", "not an action100m VL-JEPA checkpoint"),
    }
    for name, (file, needle) in cases.items():
        if quick and name in FULL_ONLY:
            continue
        command = [*EVAL, *benchmark, f"checkpoint={folder / file}", f"output_dir={folder / 'eval'}"]
        case = check_error(
            report.add(Case("eval", name, f"error naming the file, '{needle}'")), run(command), file, needle
        )
        if marker.exists():
            case.ok, case.got = False, f"{case.got}; the pickled code RAN"
    # another preset's checkpoint, to resume a tiny run from: refused before training starts
    command = [
        *TRAIN,
        f"data.shards={setup.good_built}",
        "logger=csv",
        f"output_dir={folder / 'train'}",
        f"ckpt_path={folder / 'other_preset.ckpt'}",
    ]
    check_error(
        report.add(Case("train", "ckpt_other_preset", "error naming both presets")),
        run(command, timeout=240),
        "other_preset.ckpt",
        "'vljepa_paper'",
    )


# -- configs ------------------------------------------------------------------------------------------


def config_cases(report: Report, setup: Setup, quick: bool) -> None:
    """Overrides that cannot make a config. Hydra's own errors span a few lines (never a traceback)."""
    build = [*BUILD, f"input={setup.synth / 'manifest.jsonl'}", f"output={setup.work / 'cfg_build'}"]
    train = [
        *TRAIN,
        f"data.shards={setup.good_built}",
        "logger=csv",
        f"output_dir={setup.work / 'cfg_train'}",
    ]
    evaluate = [*EVAL, f"zero_shot.root={setup.synth / 'benchmark'}", f"output_dir={setup.work / 'cfg_eval'}"]
    cases = {
        "build_typo_key": ([*build, "segment.featurs=pixel"], "featurs", False),
        "build_wrong_type": ([*build, "samples_per_shard=many"], "samples_per_shard", False),
        "build_missing_required": ([*BUILD, f"output={setup.work / 'cfg_build'}"], "input", False),
        "build_unknown_group_option": ([*build, "build=nope"], "nope", False),
        "train_unknown_group_option": ([*train, "model=nope"], "nope", False),
        "train_typo_key": ([*train, "optim.lrr=1"], "lrr", False),
        "train_missing_required": ([*TRAIN, "logger=csv"], "data.shards", False),
        "eval_unknown_group_option": ([*evaluate, "zero_shot=nope"], "nope", False),
        "eval_wrong_type": ([*evaluate, "zero_shot=synth", "workers=abc"], "workers", False),
        "demo_typo_key": ([*CLI, "demo", "vidoes=3"], "vidoes", True),
        "demo_wrong_type": ([*CLI, "demo", "videos=many"], "videos", True),
    }
    for name, (command, needle, one_line) in cases.items():
        if quick and name in FULL_ONLY:
            continue
        ran = run(command, timeout=120)
        check_error(
            report.add(Case("config", name, f"error naming '{needle}'")), ran, needle, one_line=one_line
        )


# -- valid but unusual videos -------------------------------------------------------------------------


def odd_video_cases(report: Report, setup: Setup, seconds: float) -> None:
    """tests/video/kinds.py's codecs, containers, pixel formats, sizes and frame rates: all build."""
    folder = setup.work / "odd"
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    source = open_video(setup.synth / "videos" / "synth-000000.mp4", "pyav")
    fps = source.info.fps
    frames = [frame.numpy() for frame in source.read_frames(range(round(seconds * fps)))]
    source.close()
    [truth] = [json.loads(line) for line in (setup.synth / "ground_truth.jsonl").read_text().splitlines()[:1]]
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings for every video otherwise
    kinds = [kind for kind in KINDS if kind.codec in av.codecs_available]  # what this PyAV can encode
    entries, truths = [], []
    for kind in kinds:
        path = write_kind(folder / "videos", kind, frames, fps)
        entries.append(entry(kind.name, path))
        truths.append(json.dumps({**truth, "video_uid": kind.name}))
    manifest = write_manifest(folder / "manifest.jsonl", entries)
    (folder / "ground_truth.jsonl").write_text("\n".join(truths) + "\n")
    out = folder / "out"
    options = ["segment.features=pixel", f"samples_per_shard={len(kinds)}", "progress=false"]
    ran = run([*BUILD, f"input={manifest}", f"output={out}", *options], timeout=300)
    expected = [(kind.name, kind.name, "built", "") for kind in kinds]
    first = len(report.cases)
    check_run_cases(report, "odd", ran, out, expected, [])
    for case in report.cases[first:]:
        case.odd = True


# -- a full disk --------------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def half_written(out: Path, reference: Path) -> list[str]:
    """Visible files that are not complete: a shard or marker unlike the reference's, or a record file
    that does not parse. Temp names (.NAME.*.tmp) are allowed: a rerun removes them."""
    import yaml

    bad = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out)
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        try:
            if relative.parts[0] == "shards":
                same = (reference / relative).is_file() and (
                    reference / relative
                ).read_bytes() == path.read_bytes()
                if not same:
                    bad.append(str(relative))
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                for line in path.read_text().splitlines():
                    json.loads(line)
            elif path.suffix == ".yaml":
                yaml.safe_load(path.read_text())
        except (ValueError, yaml.YAMLError):
            bad.append(str(relative))
    return bad


class TinyDisk:
    """A folder on a filesystem of `size` bytes: a tmpfs where mounting is allowed; otherwise a plain
    folder and RLIMIT_FSIZE in the child (each file at most `size` bytes: a write past it is EFBIG)."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size = folder, max(4096, size // 4096 * 4096)
        folder.mkdir(parents=True, exist_ok=True)
        mount = ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(folder)]
        try:
            self.mounted = subprocess.run(mount, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            self.mounted = False
        self.method = f"tmpfs size={self.size}" if self.mounted else f"RLIMIT_FSIZE={self.size}"

    def options(self) -> dict[str, Any]:
        if self.mounted:
            return {}
        size = self.size

        def limit() -> None:
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

        return {"preexec_fn": limit}

    def close(self) -> None:
        if self.mounted:
            done = subprocess.run(["umount", str(self.folder)], capture_output=True, timeout=30)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.folder)], capture_output=True, timeout=30)
            self.mounted = False


def disk_full_case(
    report: Report, name: str, command: Callable[[Path], list[str]], reference: Path, tiny: Path, fsize: bool
) -> tuple[bool, str]:
    """`command(out)` with out on a tiny disk: a clear error naming a path there, nothing half written;
    then the same command with out moved to a normal folder gives the reference's shards."""
    case = report.add(Case("disk_full", name, "error naming the path; rerun elsewhere = reference"))
    # per-file limits bite only past the largest file; a tmpfs fills up at half the output
    largest = max(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    disk = TinyDisk(tiny, largest // 2 if fsize else folder_bytes(reference) // 2)
    moved = tiny.parent / f"{name}_moved"
    shutil.rmtree(moved, ignore_errors=True)
    try:
        out = tiny / "out"
        ran = run(command(out), timeout=240, **disk.options())
        check_error(case, ran, str(tiny))
        left = half_written(out, reference) if out.is_dir() else []
        if left:
            case.ok, case.got = False, f"{case.got}; half-written: {left[:3]}"
        if out.is_dir():
            shutil.copytree(out, moved, symlinks=True)
    finally:
        disk.close()
    again = run(command(moved), timeout=240)
    same = again.code == 0 and shard_digests(moved) == shard_digests(reference) and shard_digests(moved)
    tars = sorted(p.name for p in (moved / "shards").glob("*.tar")) if moved.is_dir() else []
    identical = same and all(
        (moved / "shards" / t).read_bytes() == (reference / "shards" / t).read_bytes() for t in tars
    )
    if not identical:
        case.ok = False
        case.got += f"; rerun: exit {again.code}, {'shards differ from' if again.code == 0 else again.last_line()[:120]} the reference"
    else:
        case.got += "; rerun moved: identical shards"
    return case.ok, disk.method


def disk_full_cases(report: Report, setup: Setup) -> dict[str, str]:
    tiny = setup.work / "tiny_disk"
    manifest = setup.synth / "manifest.jsonl"

    def build(out: Path) -> list[str]:
        return [*BUILD, f"input={manifest}", f"output={out}", *FAST]

    videos = official_videos(setup)
    annotations = setup.work / "official" / "good.jsonl"
    annotations.parent.mkdir(exist_ok=True)
    write_manifest(annotations, [official_row(uid) for uid in GOOD])

    def official(out: Path) -> list[str]:
        return import_command(annotations, videos, out)

    reference = setup.work / "official_reference"
    if run(official(reference), timeout=120).code != 0:
        raise SystemExit("inputs: the good official import failed")
    probe = TinyDisk(tiny, 1 << 20)
    fsize = not probe.mounted
    probe.close()
    results = {}
    for name, command, ref in (("build", build, setup.good_built), ("official_import", official, reference)):
        ok, method = disk_full_case(report, name, command, ref, tiny, fsize)
        results[name] = "ok" if ok else "failed"
    results["method"] = method.split("=")[0]
    return results


# -- the run ------------------------------------------------------------------------------------------


def run_inputs(workdir: Path, quick: bool = True) -> dict[str, Any]:
    """Every case under `workdir`; returns the counts and one line per case."""
    # a fresh folder: a build refuses an output made from another input, as a rerun here would be
    work = Path(workdir) / "inputs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    setup = make_setup(work)
    report = Report()
    build_bad_videos_and_records(report, setup)
    build_manifest_errors(report, setup, quick)
    build_unreadable(report, setup)
    official_cases(report, setup)
    shard_cases(report, setup, quick)
    checkpoint_cases(report, setup, quick)
    config_cases(report, setup, quick)
    odd_video_cases(report, setup, 6.0 if quick else 8.0)
    disk = disk_full_cases(report, setup)
    counted = [c for c in report.cases if not c.odd and c.group != "disk_full" and not c.lost]
    return {
        "bad_kinds": len(counted),
        "crashes": sum(not c.ok and not c.lost for c in report.cases if not c.odd),
        "lost": sum(c.lost for c in report.cases),
        "odd_videos": sum(c.odd for c in report.cases),
        "odd_videos_built": sum(c.odd and c.ok for c in report.cases),
        "disk_full": "ok" if all(v == "ok" for k, v in disk.items() if k != "method") else "failed",
        "disk_full_detail": disk,
        "cases": [c.line() for c in report.cases],
        "table": [(f"{c.group}/{c.name}", c.expected, c.got, c.ok, c.seconds) for c in report.cases],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter odd videos; fewer repeats of one code path"
    )
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp folder, removed)")
    args = parser.parse_args()
    start = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reliability-inputs-"))
    try:
        result = run_inputs(workdir, args.quick)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(name) for name, *_ in result["table"])
    print(f"{'case':<{width}}  ok?    expected -> got")
    for name, expected, got, ok, _ in result["table"]:
        print(f"{name:<{width}}  {'ok   ' if ok else 'CRASH'}  {expected} -> {got}")
    seconds: dict[str, float] = {}
    for name, *_, spent in result["table"]:
        seconds[name.split("/")[0]] = seconds.get(name.split("/")[0], 0.0) + spent
    print("\nseconds per group: " + ", ".join(f"{group} {spent:.0f}" for group, spent in seconds.items()))
    odd = result["odd_videos"]
    crashes, lost = result["crashes"], result["lost"]
    print(
        f"\n{result['bad_kinds']} bad kinds: {crashes} crashes ({crashes / result['bad_kinds']:.0%}), {lost} good inputs lost; "
        f"{result['odd_videos_built']}/{odd} unusual videos built ({result['odd_videos_built'] / max(odd, 1):.0%}); "
        f"disk full ({result['disk_full_detail']['method']}): {result['disk_full']}; {time.perf_counter() - start:.0f} s"
    )
    print(
        f"RESULT bad_kinds={result['bad_kinds']} crashes={crashes} lost={lost} "
        f"odd_videos_built={result['odd_videos_built']} disk_full={result['disk_full']}"
    )
    return 1 if crashes or lost else 0


if __name__ == "__main__":
    sys.exit(main())
