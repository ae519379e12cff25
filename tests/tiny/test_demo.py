import os
import sys
import time

import pytest

from action100m.tiny.demo import DemoError, _run_at_once


def _job(name, code, tmp_path):
    return (name, [sys.executable, "-c", code], tmp_path / f"{name}.log")


def test_jobs_run_at_once_in_order_and_the_first_failure_stops_the_others(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    code = "import pathlib, sys, time; time.sleep(0.5); pathlib.Path(sys.argv[1]).touch()"
    jobs = [
        (f"job{k}", [sys.executable, "-c", code, str(marks / str(k))], tmp_path / f"{k}.log")
        for k in range(4)
    ]
    started = time.perf_counter()
    seconds = _run_at_once(jobs, 2, dict(os.environ))
    assert sorted(p.name for p in marks.iterdir()) == ["0", "1", "2", "3"]
    assert seconds == pytest.approx(time.perf_counter() - started, abs=0.5)

    failing = [
        _job("sleeper", "import time; time.sleep(60)", tmp_path),
        _job("broken", "print('the reason'); raise SystemExit(3)", tmp_path),
        _job("never", "raise SystemExit(0)", tmp_path),
    ]
    started = time.perf_counter()
    with pytest.raises(DemoError, match=r"broken failed \(exit 3\); its log: .*broken.log\nthe reason"):
        _run_at_once(failing, 2, dict(os.environ))
    assert time.perf_counter() - started < 30  # the sleeper was stopped, not waited for
    assert not (tmp_path / "never.log").exists()
