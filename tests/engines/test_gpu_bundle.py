"""engines/gpu_bundle.py and the benchmark it carries: the bundle holds what the lent GPU machine lacks
and no more, fits its 64 MiB, installs as the machine's command installs it; the benchmark imports
nothing the machine lacks and runs its --quick sizes without it; its sweeps say why they stopped."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from action100m.cli import main
from action100m.models.config import MINILM
from action100m.models.hub import model_path
from action100m.utils.lockcheck import read_lock

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_bundle = load("gpu_bundle", ROOT / "engines" / "gpu_bundle.py")
presets = load("gpu_paper_presets", ROOT / "benchmarks" / "gpu_paper_presets.py")

# Runs a script with the modules the machine lacks made absent, as they are there: None in sys.modules
# fails their import and makes importlib.util.find_spec (how libraries probe optional ones) say None.
WITHOUT_WHAT_THE_MACHINE_LACKS = f"""
import runpy, sys
sys.modules.update(dict.fromkeys({gpu_bundle.MACHINE_LACKS!r}))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / ".gpu-bundle"
    return out, gpu_bundle.build_bundle(out)


@pytest.mark.timeout(300)
def test_the_bundle_holds_the_locked_wheels_and_the_tokenizer_without_weights(bundle):
    out, manifest = bundle
    pins = read_lock(ROOT / "requirements" / "lock.txt")
    wheels = sorted(p.name for p in (out / "wheels").iterdir())
    assert wheels == [
        f"antlr4_python3_runtime-{pins['antlr4-python3-runtime']}-py3-none-any.whl",
        f"omegaconf-{pins['omegaconf']}-py3-none-any.whl",
    ]
    assert sorted(p.name for p in (out / "minilm-tokenizer").iterdir()) == sorted(gpu_bundle.TOKENIZER_FILES)
    # the tokenizer files alone tokenise as the whole bundled model does
    text = ["slice the onion, then stir it into the pan"]
    ours, bundled = (
        AutoTokenizer.from_pretrained(out / "minilm-tokenizer"),
        AutoTokenizer.from_pretrained(model_path(MINILM)),
    )
    assert ours(text)["input_ids"] == bundled(text)["input_ids"]
    # the manifest names every file with its size and hash; the whole fits
    files = {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.json"}
    assert sorted(manifest["files"]) == sorted(files)
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": files[name].stat().st_size, "sha256": gpu_bundle.sha256(files[name])}
    assert manifest["bundle_bytes"] == sum(p.stat().st_size for p in files.values()) < gpu_bundle.BUNDLE_LIMIT
    assert manifest["travel_bytes"] == manifest["bundle_bytes"] + gpu_bundle.tree_bytes(ROOT)
    assert manifest["travel_bytes"] < gpu_bundle.TRAVEL_LIMIT
    assert json.loads((out / "MANIFEST.json").read_text()) == manifest


def test_the_machine_command_fits_the_device_tool_and_writes_to_its_out_folder():
    command = gpu_bundle.machine_command()
    assert len(command) <= gpu_bundle.COMMAND_LIMIT
    assert subprocess.run(["bash", "-n", "-c", command], timeout=30).returncode == 0
    for part in (
        "--no-index --no-deps",
        f"{gpu_bundle.BUNDLE}/wheels/*.whl",
        "HF_HUB_OFFLINE=1",
        "PYTHONUNBUFFERED=1",
        "--budget-s 270",
        f"--tokenizer {gpu_bundle.BUNDLE}/minilm-tokenizer",
        '--out "$OUT/gpu_paper_presets.json"',
    ):
        assert part in command
    # the benchmark's budget and the backstop both end inside the device tool's timeout for it
    assert gpu_bundle.BUDGET_S < gpu_bundle.COMMAND_TIMEOUT_S + 10 < gpu_bundle.RUN_TIMEOUT_S <= 600
    assert gpu_bundle.machine_command(quick=True) == command.replace(
        "gpu_paper_presets.py ", "gpu_paper_presets.py --quick "
    )
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")  # the README gives it as it is
    # the bundle folder is ignored by git, so it travels only where a call carries it
    # (a path inside it: on a clean clone there is no folder for a `dir/` pattern to match)
    inside = f"{gpu_bundle.BUNDLE}/MANIFEST.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", inside], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0


@pytest.mark.timeout(300)
def test_the_wheels_install_as_the_machine_command_installs_them(bundle, tmp_path):
    out, _ = bundle
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run(
        [*pip, "--target", str(target), *map(str, (out / "wheels").glob("*.whl"))], check=True, timeout=120
    )
    found = subprocess.run(
        [sys.executable, "-c", "import omegaconf, antlr4; print(omegaconf.__file__); print(antlr4.__file__)"],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert all(line.startswith(str(target)) for line in found.stdout.splitlines())


def test_the_models_and_the_benchmark_need_no_decoder_hydra_or_minilm(tmp_path):
    script = tmp_path / "imports.py"
    script.write_text(
        "import action100m.models.vljepa, action100m.models.loss, action100m.video, data_build.segment\n"
        "from action100m.video import VideoError, VideoSource\n"
        "from action100m.models.config import model_preset\n"
        "assert model_preset('vljepa_paper').embed_dim == 1536\n"
        "import runpy, sys\n"
        "sys.argv = ['gpu_paper_presets.py', '--help']\n"
        "runpy.run_path('benchmarks/gpu_paper_presets.py', run_name='__main__')\n"
    )
    args = [sys.executable, "-c", WITHOUT_WHAT_THE_MACHINE_LACKS, str(script)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--tokenizer" in done.stdout
    # and where a decoder is needed, its absence is one clear error
    script.write_text("from action100m.video import open_video\nopen_video('x.mp4', backend='pyav').info\n")
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "ModuleNotFoundError: import of av halted"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_benchmark_runs_its_quick_sizes_without_what_the_machine_lacks(bundle, tmp_path, capsys):
    out, _ = bundle
    results = tmp_path / "results.json"
    args = ["--quick", "--device", "cpu", "--tokenizer", str(out / "minilm-tokenizer"), "--out", str(results)]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_WHAT_THE_MACHINE_LACKS, "benchmarks/gpu_paper_presets.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    values = dict(pair.split("=", 1) for pair in last.split()[1:])
    assert float(values["vitg_windows_per_s"]) > 0 and values["vitg_stopped"] == "cap"
    for stage in (1, 2, 3):
        assert float(values[f"vljepa_stage{stage}_samples_per_s"]) > 0
        assert values[f"vljepa_stage{stage}_nockpt_stopped"] == "cap"  # --quick caps far below a CPU's memory
    data = json.loads(results.read_text())
    assert data["environment"]["quick"] is True and data["environment"]["gpu"] is None
    assert data["results"]["vljepa_stage3_batch"] == 2 and data["results"]["vljepa_stage1_batch"] == 4
    # the decode part needs PyAV, which the machine lacks: recorded with its traceback, the run goes on
    decode = data["results"]["decode"]
    assert decode["error"].startswith("ModuleNotFoundError: ") and " av " in decode["error"]
    assert "write_video" in decode["traceback"] and len(decode["traceback"]) <= presets.TRACEBACK_CHARS
    # the file feeds the estimate as it is: each stage measured, flagged as quick
    assert main(["estimate", "train", "--from", str(results), "--allow-quick"]) == 0
    assert capsys.readouterr().out.count("[measured: results.json (QUICK: reduced models)]") == 3


class StandIn(torch.nn.Module):
    """A model whose step fails at a batch size (an out-of-memory cannot be had on demand on the CPU)."""

    crop_size = 4

    def __init__(self, fails_at: int, error: Exception):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.fails_at, self.error = fails_at, error

    def predict(self, clips):
        if clips.shape[0] >= self.fails_at:
            raise self.error
        return clips.mean(dim=(1, 2, 3, 4))[:, None] * self.weight

    def y_encoder(self, texts):
        return torch.zeros(len(texts), 1)

    def loss(self, predicted, target):
        return (predicted - target).pow(2).mean(), None


def sweep(tmp_path, fails_at, error, cap=16, deadline=None):
    run = presets.Run(tmp_path / "r.json", {"quick": True}, budget_s=60)
    model = StandIn(fails_at, error)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    size = {"warmup": 0, "repeats": 1}
    deadline = time.monotonic() + 60 if deadline is None else deadline
    fitted, stopped = presets.sweep_batches(
        run, torch.device("cpu"), size, model, optimizer, "t", 1, cap, deadline
    )
    return [r["batch"] for r in fitted], stopped, run.results


@pytest.mark.parametrize(
    ("fails_at", "error", "cap", "batches", "stopped"),
    [
        (4, torch.OutOfMemoryError("CUDA out of memory"), 16, [1, 2], "out of memory"),
        (99, ValueError("x"), 8, [1, 2, 4, 8], "cap"),
        (2, RuntimeError("CUDA error: an illegal memory access"), 16, [1], "error"),
    ],
    ids=["oom", "cap", "error"],
)
def test_a_sweep_records_why_it_stopped(tmp_path, fails_at, error, cap, batches, stopped):
    fitted, why, results = sweep(tmp_path, fails_at, error, cap)
    assert (fitted, why) == (batches, stopped)
    if stopped == "error":
        failed = results["t_b2"]
        assert failed["error"] == "RuntimeError: CUDA error: an illegal memory access"
        assert failed["traceback"].rstrip().endswith("RuntimeError: CUDA error: an illegal memory access")
    # written as it goes: the file holds what the sweep measured
    assert json.loads((tmp_path / "r.json").read_text())["results"] == json.loads(json.dumps(results))


def test_a_sweep_past_its_deadline_stops_for_time_and_gives_no_headline(tmp_path):
    fitted, why, _ = sweep(tmp_path, 99, ValueError("x"), deadline=time.monotonic() - 1)
    assert (fitted, why) == ([], "time budget")
    ran = [{"batch": 1, "samples_per_s": 5.0}, {"batch": 2, "samples_per_s": 9.0}]
    assert presets.headline([(ran, "time budget")], "samples_per_s") is None
    assert presets.headline([(ran, "error")], "samples_per_s") is None
    faster = [{"batch": 4, "samples_per_s": 12.0}]
    assert presets.headline([(ran, "out of memory"), (faster, "time budget")], "samples_per_s")["batch"] == 2
    assert presets.headline([(ran, "out of memory"), (faster, "cap")], "samples_per_s")["batch"] == 4


def test_a_spent_budget_skips_every_part_without_a_headline(tmp_path):
    out = tmp_path / "r.json"
    assert presets.main(["--quick", "--device", "cpu", "--budget-s", "0", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["vitg_stopped"] == "time budget"
    for stage in (1, 2, 3):
        assert results[f"vljepa_stage{stage}_stopped"] == "time budget"
    assert not [k for k in results if k.endswith(("_per_s", "_batch"))]


def test_each_part_gets_its_share_of_the_time_left(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(presets.time, "monotonic", lambda: now[0])
    run = presets.Run(Path("unused.json"), {}, budget_s=480)
    weights = presets.PART_WEIGHTS
    total = sum(weights.values())
    assert run.part_deadline("segmentation") == pytest.approx(1000 + 480 * weights["segmentation"] / total)
    now[0] += 10  # segmentation took 10 s of its share: the rest passes to the later parts
    left = sum(weights.values()) - weights["segmentation"]
    assert run.part_deadline("stage1") == pytest.approx(1010 + 470 * weights["stage1"] / left)
