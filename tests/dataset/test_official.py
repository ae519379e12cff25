import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from action100m.cli import main
from action100m.dataset.official import ImportOptions, OfficialError, import_official, read_official_parquet
from action100m.dataset.schema import VideoRecord, official_rows, to_official
from action100m.dataset.shards import read_tar, shard_paths, stable_hash
from action100m.video import open_video

SAMPLE_UID = "hySSAAw4t24"


def shard_samples(out):
    return [sample for path in shard_paths(out) for sample in read_tar(path)]


def tiny_row(uid, end=3.0, **metadata):
    node = {
        "node_id": f"{uid}-root",
        "parent_id": None,
        "level": 0,
        "start": 0.0,
        "end": end,
        "plm_action": "stir",
        "plm_caption": "a bowl",
        "llama3_caption": "a bowl",
        "gpt": None,
    }
    return {"video_uid": uid, "metadata": {"title": uid, "duration": 3, **metadata}, "nodes": [node]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def export(shards, out):
    return main(["official", "export", "--shards", str(shards), "--out", str(out)])


# -- the official sample, both ways ----------------------------------------------------------------------


def test_sample_round_trip_json_import_parquet_import_again(tmp_path, capsys, official_sample, make_video):
    original = official_rows(json.loads(official_sample.read_text()))
    video = make_video(f"{SAMPLE_UID}.mp4")  # 3 s long, the record says 690 s: import does not compare
    out = tmp_path / "a"
    code, printed = run(
        capsys, "official", "import", "--annotations", official_sample, "--videos", tmp_path, "--out", out
    )
    assert code == 0, printed.err
    assert "1 videos, 917 nodes, 0 failures" in printed.out
    [(key, files)] = shard_samples(out)
    assert key == SAMPLE_UID and files["mp4"] == video.read_bytes()
    assert to_official(VideoRecord.from_json(files["json"])) == original[0]

    assert export(out / "shards", tmp_path / "a.parquet") == 0
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.column_names == ["video_uid", "metadata", "nodes"]
    assert pa.types.is_struct(table.schema.field("metadata").type)
    rows = table.to_pylist()
    assert json.dumps(rows) == json.dumps(original)  # values, nulls and key order
    root = rows[0]["nodes"][0]
    assert root["end"] == 689.8300170898438 and rows[0]["metadata"]["transcript"][1]["time"] == "3.45"

    assert export(out, tmp_path / "a.json") == 0
    assert (tmp_path / "a.json").read_bytes() == official_sample.read_bytes()
    assert export(out, tmp_path / "a.jsonl") == 0
    assert [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()] == original

    # parquet -> import (--parquet is an alias) -> export: the same Parquet bytes, the same shard samples
    code, printed = run(
        capsys,
        "official",
        "import",
        "--parquet",
        tmp_path / "a.parquet",
        "--videos",
        tmp_path,
        "--out",
        tmp_path / "b",
    )
    assert code == 0, printed.err
    assert export(tmp_path / "b", tmp_path / "b.parquet") == 0
    assert (tmp_path / "b.parquet").read_bytes() == (tmp_path / "a.parquet").read_bytes()
    [(_, again)] = shard_samples(tmp_path / "b")
    assert again["mp4"] == files["mp4"]
    imported = VideoRecord.from_json(again["json"])
    assert imported.provenance.extra == {"source": "action100m-official-import"}
    imported.provenance = None  # the release has no place for it
    assert read_official_parquet(tmp_path / "b.parquet")[0].to_dict() == imported.to_dict()


def test_parquet_has_one_schema_per_file(tmp_path):
    """Documented limitation: a metadata key that some rows lack reads back as null there; JSONL keeps it."""
    rows = [tiny_row("a"), tiny_row("b", channel="x")]
    import_official(
        write_jsonl(tmp_path / "in.jsonl", rows), None, tmp_path / "out", ImportOptions(video=False)
    )
    assert export(tmp_path / "out", tmp_path / "x.parquet") == 0
    back = {row["video_uid"]: row for row in pq.read_table(tmp_path / "x.parquet").to_pylist()}
    assert back["a"]["metadata"] == {"title": "a", "duration": 3, "channel": None}
    assert back["b"] == rows[1]
    assert export(tmp_path / "out", tmp_path / "x.jsonl") == 0
    exported = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert sorted(exported, key=lambda r: r["video_uid"]) == rows


def test_parquet_refuses_a_field_of_two_types(tmp_path, capsys):
    rows = [tiny_row("a", views=3), tiny_row("b", views="many")]
    import_official(
        write_jsonl(tmp_path / "in.jsonl", rows), None, tmp_path / "out", ImportOptions(video=False)
    )
    code, printed = run(
        capsys, "official", "export", "--shards", tmp_path / "out", "--out", tmp_path / "x.parquet"
    )
    assert code == 2 and not (tmp_path / "x.parquet").exists()
    [line] = printed.err.strip().splitlines()
    assert "action100m official export: error: " in line and "export to .jsonl keeps any record" in line
    assert export(tmp_path / "out", tmp_path / "x.jsonl") == 0


# -- import: failures, determinism, resume ------------------------------------------------------------


@pytest.fixture
def release(tmp_path, make_video):
    """Seven rows: three with videos (one in a folder of its own), one without, one whose video does not
    decode, one that breaks the schema, and a repeat of a video_uid."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for uid in ("v1", "v2"):
        make_video(f"videos/{uid}.mp4", num_frames=20)
    (videos / "v3").mkdir()
    make_video("videos/v3/clip.mp4", num_frames=20)
    (videos / "v3" / "v3.info.json").write_text("{}")
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    rows = [
        tiny_row("v1"),
        tiny_row("v2"),
        tiny_row("v3"),
        tiny_row("missing"),
        tiny_row("broken"),
        tiny_row("bad"),
        tiny_row("v1"),
    ]
    rows[5]["nodes"][0]["level"] = 1
    return write_jsonl(tmp_path / "release.jsonl", rows), videos


def test_import_failures_and_shard_layout(tmp_path, release, capsys):
    annotations, videos = release
    out = tmp_path / "out"
    code, printed = run(
        capsys,
        "official",
        "import",
        "--annotations",
        annotations,
        "--videos",
        videos,
        "--out",
        out,
        "--samples-per-shard",
        2,
    )
    assert code == 0, printed.err
    assert "4 shards built, 0 already done; 3 videos" in printed.out and "4 failures" in printed.out
    samples = shard_samples(out)
    assert sorted(key for key, _ in samples) == ["v1", "v2", "v3"]
    assert all(set(files) == {"json", "mp4"} for _, files in samples)
    assert dict(samples)["v3"]["mp4"] == (videos / "v3" / "clip.mp4").read_bytes()
    failures = {json.loads(line)["video_uid"]: json.loads(line) for line in (out / "failures.jsonl").open()}
    assert set(failures) == {"missing", "broken", "bad", "v1"}
    assert {f["stage"] for f in failures.values()} == {"import"}
    assert "no video in" in failures["missing"]["reason"]
    assert "unreadable video" in failures["broken"]["reason"]
    assert "invalid record" in failures["bad"]["reason"] and "level 1" in failures["bad"]["reason"]
    assert "duplicate video_uid: row 0" in failures["v1"]["reason"]
    # rows in sha1 order of their video_uid (ties: row order), cut into shards of 2; failures keep their slot
    uids = ["v1", "v2", "v3", "missing", "broken", "bad", "v1"]
    order = sorted(range(len(uids)), key=lambda i: (stable_hash(uids[i]), i))
    kept = (0, 1, 2)
    assert [key for key, _ in samples] == [uids[i] for i in order if i in kept]
    sizes = {f"action100m-{k:06d}.tar": sum(i in kept for i in order[2 * k : 2 * k + 2]) for k in range(4)}
    assert json.loads((out / "sizes.json").read_text()) == sizes
    stats = json.loads((out / "stats.json").read_text())
    expected = {"shards": 4, "samples": 3, "videos": 3, "nodes": 3, "annotated_nodes": 0, "failures": 4}
    assert {key: stats[key] for key in expected} == expected


def test_import_is_deterministic_and_resumable(tmp_path, release):
    annotations, videos = release
    options = ImportOptions(samples_per_shard=2)
    first = import_official(annotations, videos, tmp_path / "a", options)
    import_official(annotations, videos, tmp_path / "b", options)
    tars = {p.name: p.read_bytes() for p in shard_paths(tmp_path / "a")}
    assert tars == {p.name: p.read_bytes() for p in shard_paths(tmp_path / "b")}
    again = import_official(annotations, videos, tmp_path / "a", options)
    assert (first["built"], again["built"], again["skipped"]) == (4, 0, 4)
    assert {p.name: p.read_bytes() for p in shard_paths(tmp_path / "a")} == tars

    # the missing video turns up: --retry-failed rebuilds the shards that had failures, and only those
    (videos / "v1.mp4").rename(videos / "missing.mp4")
    (videos / "v1").mkdir()
    (videos / "v1" / "clip.mkv").hardlink_to(videos / "v2.mp4")
    retried = import_official(annotations, videos, tmp_path / "a", options, retry_failed=True)
    assert retried["built"] == 3 and retried["skipped"] == 1
    assert sorted(key for key, _ in shard_samples(tmp_path / "a")) == ["missing", "v1", "v2", "v3"]

    with pytest.raises(OfficialError, match="holds shards made from other annotations or options"):
        import_official(annotations, videos, tmp_path / "a", ImportOptions(samples_per_shard=3))


def test_reencode_and_records_only(tmp_path, release):
    annotations, videos = release
    options = ImportOptions(samples_per_shard=10, reencode_short_side=16, reencode_fps=5)
    import_official(annotations, videos, tmp_path / "a", options)
    import_official(annotations, videos, tmp_path / "b", options)
    [a], [b] = shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    clip = dict(read_tar(a))["v2"]["mp4"]
    info = open_video(clip, backend="pyav").info
    # from 48x64 at 10 fps, 20 frames: short side 16, width 64/3 to the nearest even size
    assert (info.height, info.width, info.fps, info.num_frames) == (16, 22, 5.0, 10)

    summary = import_official(annotations, None, tmp_path / "c", ImportOptions(video=False))
    samples = shard_samples(tmp_path / "c")
    assert all(set(files) == {"json"} for _, files in samples)
    assert summary["samples"] == 5 and summary["failures"] == 2  # videos are not looked for


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            "official import --annotations {tmp}/nope.parquet --videos {tmp} --out {tmp}/o",
            "action100m official import: error: {tmp}/nope.parquet: no such annotations file",
        ),
        (
            "official import --annotations {tmp}/r.jsonl --out {tmp}/o",
            "action100m official import: error: the folder of the videos is needed",
        ),
        (
            "official import --annotations {tmp}/r.jsonl --videos {tmp}/none --out {tmp}/o",
            "action100m official import: error: {tmp}/none: no such video folder",
        ),
        (
            "official import --annotations {tmp}/r.jsonl --no-video --videos {tmp} --out {tmp}/o",
            "action100m official import: error: records only (no video)",
        ),
        (
            "official import --annotations {tmp}/r.jsonl --videos {tmp} --out {tmp}/o --crf 30",
            "action100m official import: error: --crf needs --reencode-short-side or --reencode-fps",
        ),
        (
            "official import --annotations {tmp}/r.txt --no-video --out {tmp}/o",
            "action100m official import: error: {tmp}/r.txt: annotations must be .parquet, .json or .jsonl",
        ),
        (
            "official import --annotations {tmp}/garbage.parquet --no-video --out {tmp}/o",
            "action100m official import: error: {tmp}/garbage.parquet: cannot read Parquet",
        ),
        (
            "official import --annotations {tmp}/cut.jsonl --no-video --out {tmp}/o",
            "action100m official import: error: {tmp}/cut.jsonl line 2: not JSON",
        ),
        (
            "official import --annotations {tmp}/r.jsonl --no-video --out {tmp}/r.txt",
            "action100m official import: error: [Errno 17] File exists: '{tmp}/r.txt'",
        ),
        (
            "official export --shards {tmp}/none --out {tmp}/x.parquet",
            "action100m official export: error: {tmp}/none: no such shard folder",
        ),
        (
            "official export --shards {tmp} --out {tmp}/x.csv",
            "action100m official export: error: {tmp}/x.csv: the output must end in .parquet, .json, .jsonl",
        ),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    write_jsonl(tmp_path / "r.jsonl", [tiny_row("a")])
    (tmp_path / "r.txt").write_text("")
    (tmp_path / "garbage.parquet").write_text("not parquet")
    (tmp_path / "cut.jsonl").write_text(json.dumps(tiny_row("a")) + '\n{"video_uid": "b", "nodes": [\n')
    code, printed = run(capsys, *argv.format(tmp=tmp_path).split())
    assert code == 2
    [line] = printed.err.strip().splitlines()
    assert line.startswith(message.format(tmp=tmp_path))
