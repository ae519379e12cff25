import gzip
import io
import itertools
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from action100m.dataset.shards import (
    MEMBER_LIMITS,
    ShardError,
    ShardSet,
    iter_members,
    read_tar,
    shard_paths,
    write_tar,
)
from action100m.errors import RecordError, StageError
from action100m.train.data.config import DataConfig
from action100m.train.data.fields import FieldMix
from action100m.train.data.scan import scan_shard
from action100m.train.data.stream import DataError, NodeStream, _Failures


def samples(n):
    return [(f"vid-{i}", {"json": json.dumps({"i": i}).encode(), "mp4": bytes([i]) * 10}) for i in range(n)]


def test_tar_is_deterministic_and_readable_by_webdataset(tmp_path):
    count, digest = write_tar(tmp_path / "a.tar", samples(3))
    again = write_tar(tmp_path / "b.tar", samples(3))
    assert (count, digest) == again == (3, again[1])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    read = [
        (s["__key__"], json.loads(s["json"])["i"], s["mp4"])
        for s in wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False)
    ]
    assert read == [(f"vid-{i}", i, bytes([i]) * 10) for i in range(3)]
    assert [key for key, _ in read_tar(tmp_path / "a.tar")] == ["vid-0", "vid-1", "vid-2"]


def test_unsafe_keys_are_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(RecordError, match="invalid video_uid '../x'"):
        write_tar(tmp_path / "a.tar", [("../x", {"json": b"{}"})])
    assert list(tmp_path.iterdir()) == []


def test_marker_last_and_summary(tmp_path):
    shard_set = ShardSet(tmp_path, prefix="p")
    failure = StageError("vid-9", "caption", "backend down", node_id="n1")
    shard_set.write_shard(0, samples(2), [failure], "h1", {"videos": 2, "nodes": 10, "annotated_nodes": 4})
    shard_set.write_shard(1, samples(1), [], "h1", {"videos": 1, "nodes": 3, "annotated_nodes": 1})
    shard_set.tar_path(2).write_bytes(b"half a tar")  # an interrupted write: no marker
    assert shard_set.finished() == [0, 1]
    assert shard_set.is_done(0, "h1") and not shard_set.is_done(0, "h2") and not shard_set.is_done(2, "h1")
    summary = shard_set.refresh_summary()
    assert summary == {
        "shards": 2,
        "samples": 3,
        "videos": 3,
        "nodes": 13,
        "annotated_nodes": 5,
        "failures": 1,
        "scored_videos": 0,
        "boundary_f1_sum": 0,
    }
    assert json.loads((tmp_path / "sizes.json").read_text()) == {"p-000000.tar": 2, "p-000001.tar": 1}
    [line] = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "video_uid": "vid-9",
        "node_id": "n1",
        "stage": "caption",
        "reason": "backend down",
    }
    assert [p.name for p in shard_paths(tmp_path)] == ["p-000000.tar", "p-000001.tar"]


def test_no_finished_shards(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(ShardError, match="no finished shards"):
        shard_paths(tmp_path)
    with pytest.raises(ShardError, match="no such shard folder"):
        shard_paths(tmp_path / "nope")


def member(name, data=b"", **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for field, value in fields.items():
        setattr(info, field, value)
    return info, data


GOOD_JSON = member("vid-0.json", b"{}")

# (what the hostile tar holds after one good member, the error it gives); each tar is otherwise well formed
HOSTILE = {
    "dotdot": (member("../evil.json", b"{}"), "member '../evil.json': '..' in the name"),
    "absolute": (member("/etc/evil.json", b"{}"), "member '/etc/evil.json': absolute name"),
    "directory part": (member("sub/vid-1.json", b"{}"), "member 'sub/vid-1.json': a directory part"),
    "symlink": (
        member("vid-1.mp4", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        r"member 'vid-1.mp4': not a regular file \(symlink\)",
    ),
    "hard link": (
        member("vid-1.json", type=tarfile.LNKTYPE, linkname="vid-0.json"),
        r"member 'vid-1.json': not a regular file \(hard link\)",
    ),
    "device": (
        member("vid-1.json", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
        r"member 'vid-1.json': not a regular file \(character device\)",
    ),
    "directory": (
        member("vid-1.json", type=tarfile.DIRTYPE, mode=0o755),
        r"member 'vid-1.json': not a regular file \(directory\)",
    ),
    "wrong extension": (
        member("vid-1.sh", b"rm -rf /"),
        r"member 'vid-1.sh': unknown extension 'sh' \(known: json, mp4\)",
    ),
    "bad key": (member("vid$1.json", b"{}"), r"member 'vid\$1.json': invalid video_uid 'vid\$1'"),
    "no extension": (member("vid-1", b"{}"), "member 'vid-1': unknown extension ''"),
}


def hostile_tar(path, *members):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return path


def forged_size_tar(path, name, size):
    """A tar whose one member's header declares `size` bytes that the file does not hold."""
    info = tarfile.TarInfo(name)
    info.size = size
    path.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + b"x" * 512 + bytes(1024))
    return path


def readers():
    def scan(path):
        return scan_shard(Path(path))

    return {"read_tar": lambda path: list(read_tar(path)), "scan_shard": scan}


def refused(read, path, pattern):
    with pytest.raises(ShardError, match=pattern) as err:
        read(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("reader", ["read_tar", "scan_shard"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_members_are_refused_naming_shard_and_member(tmp_path, monkeypatch, reader, kind):
    monkeypatch.chdir(tmp_path)  # where an extracting reader would write
    bad, pattern = HOSTILE[kind]
    path = hostile_tar(tmp_path / "bad.tar", GOOD_JSON, bad)
    refused(readers()[reader], path, pattern)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]  # nothing extracted, no link followed


@pytest.mark.parametrize("reader", ["read_tar", "scan_shard"])
def test_sizes_past_the_limit_or_the_file_are_refused(tmp_path, reader):
    read = readers()[reader]
    refused(
        read, forged_size_tar(tmp_path / "a.tar", "vid-0.json", 1 << 30), "over the 64 MiB limit for .json"
    )
    refused(read, forged_size_tar(tmp_path / "b.tar", "vid-0.mp4", 5 << 30), "over the 4 GiB limit for .mp4")
    refused(
        read,
        forged_size_tar(tmp_path / "c.tar", "vid-0.mp4", 1 << 30),
        "member 'vid-0.mp4': truncated shard: the member declares 1073741824 bytes, the file ends 1536 bytes into it",
    )


def test_the_limits_are_configurable(tmp_path):
    write_tar(tmp_path / "a.tar", samples(1))
    with pytest.raises(ShardError, match="'vid-0.mp4': 10 bytes, over the 9 bytes limit for .mp4"):
        list(read_tar(tmp_path / "a.tar", limits={**MEMBER_LIMITS, "mp4": 9}))
    assert len(list(read_tar(tmp_path / "a.tar", limits={**MEMBER_LIMITS, "mp4": 10}))) == 1


@pytest.mark.parametrize("reader", ["read_tar", "scan_shard"])
def test_truncated_shards_are_refused(tmp_path, reader):
    read = readers()[reader]
    records = [(f"vid-{i}", {"json": b"{}", "mp4": bytes(2000)}) for i in range(2)]
    write_tar(tmp_path / "good.tar", records)
    whole = (tmp_path / "good.tar").read_bytes()
    offsets = {m.name: m.offset_data for m in tarfile.open(tmp_path / "good.tar")}
    (tmp_path / "mid.tar").write_bytes(whole[: offsets["vid-1.mp4"] + 100])  # cut in a member's bytes
    refused(read, tmp_path / "mid.tar", "member 'vid-1.mp4': truncated shard")
    # cut after the last member: tarfile alone takes the missing end for an empty header and stops
    end = offsets["vid-1.mp4"] + 2048
    (tmp_path / "end.tar").write_bytes(whole[:end])
    refused(read, tmp_path / "end.tar", f"no end-of-archive block after member 'vid-1.mp4' \\(byte {end}\\)")
    (tmp_path / "header.tar").write_bytes(whole[: offsets["vid-1.mp4"] - 300])  # cut in a header
    refused(read, tmp_path / "header.tar", "no end-of-archive block after member 'vid-1.json'")
    (tmp_path / "garbage.tar").write_bytes(whole[:end] + b"\xff" * 1024)
    refused(read, tmp_path / "garbage.tar", "no end-of-archive block after member 'vid-1.mp4'")
    (tmp_path / "compressed.tar").write_bytes(gzip.compress(whole))
    refused(read, tmp_path / "compressed.tar", "unreadable shard")


def test_a_good_shard_reads_as_written(tmp_path):
    written = samples(3) + [("solo", {"json": b"{}"})]
    write_tar(tmp_path / "a.tar", written)
    assert list(read_tar(tmp_path / "a.tar")) == written
    jsons = [(key, "json", files["json"]) for key, files in written]
    assert list(iter_members(tmp_path / "a.tar", extensions={"json"})) == jsons
    write_tar(tmp_path / "empty.tar", [])
    assert list(read_tar(tmp_path / "empty.tar")) == []


def test_the_training_stream_counts_a_hostile_shard_as_one_bad_sample(tmp_path):
    good = tmp_path / "good.tar"
    write_tar(good, samples(2))
    bad = hostile_tar(tmp_path / "bad.tar", GOOD_JSON, HOSTILE["symlink"][0])
    cfg = DataConfig(shards=str(tmp_path), text_fields={"action_brief": 1.0}, max_consecutive_failures=100)
    shards = [str(good), str(bad)]
    stream = NodeStream(shards, cfg, FieldMix(cfg.text_fields), None, 0, 1, 0)
    failures = _Failures(cfg.max_consecutive_failures)
    order = itertools.cycle({"url": url} for url in shards)
    keys = [s["__key__"] for s in itertools.islice(stream._interleaved(order, failures), 6)]
    assert keys == ["vid-0", "vid-1"] * 3 and failures.take() >= 2  # the bad shard: skipped each pass
    only_bad = NodeStream([str(bad)], cfg, FieldMix(cfg.text_fields), None, 0, 1, 0)
    pattern = f"1 unreadable samples in a row, the last: {bad}: member 'vid-1.mp4': not a regular file"
    with pytest.raises(DataError, match=pattern):
        next(only_bad._interleaved(itertools.repeat({"url": str(bad)}), _Failures(0)))
