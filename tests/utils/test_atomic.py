import errno
import json

import pytest

from action100m.utils.atomic import atomic_path, write_json_atomic, write_text_atomic


def test_write_replaces_the_target_whole(tmp_path):
    target = tmp_path / "sub" / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_an_exception_keeps_the_old_content_and_no_temp(tmp_path):
    target = tmp_path / "x.txt"
    write_text_atomic(target, "old")
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_a_full_disk_names_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.txt"
    write_text_atomic(target, "old")
    with pytest.raises(OSError, match=f"No space left on device: '{target}'") as err:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no file named
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
