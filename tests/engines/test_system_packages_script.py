"""engines/system_packages.sh with stand-ins for dpkg-query, apt-get and id on PATH (apt itself cannot
be made to fail on demand): what is installed is left alone, only what is missing is asked for, and a
machine that cannot install says which packages it lacks."""

import os
import subprocess
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engines" / "system_packages.sh"


def stub(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
    (folder / name).chmod(0o755)


def run(tmp_path: Path, installed: set[str], uid: int = 0):
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir(exist_ok=True)
    known = " ".join(sorted(installed))
    stub(
        bin_dir,
        "dpkg-query",
        f'for p in {known}; do [[ "${{@: -1}}" == "$p" ]] && echo -n "install ok installed"; done; exit 0',
    )
    stub(bin_dir, "apt-get", f'echo "$@" >> {calls}')
    stub(bin_dir, "id", f"echo {uid}")
    result = subprocess.run(
        ["bash", str(ENGINE)],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stderr, calls.read_text().splitlines() if calls.exists() else []


EVERYTHING = {
    "chromium",
    "chromium-driver",
    "libavcodec59",
    "libavformat59",
    "libavutil57",
    "libavfilter8",
    "libavdevice59",
    "libswscale6",
    "libswresample4",
}


def test_nothing_is_installed_when_everything_is_there(tmp_path):
    code, err, calls = run(tmp_path, EVERYTHING)
    assert code == 0, err
    assert calls == []


def test_only_the_missing_packages_are_installed(tmp_path):
    code, err, calls = run(tmp_path, EVERYTHING - {"chromium", "libavcodec59"})
    assert code == 0, err
    assert calls[0] == "update -qq"
    assert calls[1].split()[-2:] == ["chromium", "libavcodec59"]


def test_a_machine_that_cannot_install_names_what_it_lacks(tmp_path):
    code, err, calls = run(tmp_path, EVERYTHING - {"chromium-driver"}, uid=1000)
    assert code == 3 and calls == []
    assert "missing chromium-driver" in err and "needs root" in err
