"""GPU-hour estimates of building the dataset and of training VL-JEPA, beside the paper's figures.

Each stage's GPU time is its work per video over a throughput: V-JEPA 2 windows over windows/s for
segmentation; prefill and decode tokens over tokens/s for the captioners and the LLM. As build=paper
runs them, segmentation and both captioners share the build task's one GPU (the captioners are local
transformers models there: vLLM 0.32 serves neither, see `action100m serving`), and the LLM runs on
its vLLM servers: the estimate adds the stages up per place, "build tasks" and "servers".
Work and throughputs come from configs/estimate.yaml ("configured"), or from a GPU benchmark's results
(benchmarks/gpu_paper_presets.py) and a built tree ("measured"); every figure says which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from action100m.config import load_config
from action100m.errors import ConfigError
from action100m.report.estimate_inputs import (
    MEASURED,
    EstimateError,
    measured_source,
    optional_result_number,
)
from action100m.video.sampling import window_starts

CONFIGURED = "configured"
PER_HOUR, OUTPUT = "per hour of video", "output tokens/node"
QUICK_WARNING = "WARNING: the results file was made with --quick: its figures are of reduced models"
# The Action100M paper: segmentation + captioning ≈ 1.3M V100-h and refinement ≈ 0.3M H100-h for
# 1.2M videos; VL-JEPA saw ≈ 3.3B samples on 24 nodes x 8 H200 in 4 weeks.
PAPER_VIDEOS = 1_200_000
PAPER_BUILD_HOURS = {"segmentation + captioning": (1.3e6, "V100"), "refinement": (0.3e6, "H100")}
PAPER_TRAIN = {"samples_seen": 3.3e9, "gpus": 192, "gpu": "H200", "gpu_hours": 192 * 28 * 24.0}


@dataclass
class SegmentationCost:
    gpu: str = MISSING
    source_fps: float = MISSING
    frame_step: int = MISSING
    window: int = MISSING
    window_stride: int = MISSING
    windows_per_s: float = MISSING


@dataclass
class TreeCost:
    nodes_per_hour: float = MISSING
    leaves_per_hour: float = MISSING
    refined_per_hour: float = MISSING
    min_refine_duration: float = MISSING


@dataclass
class CaptionerCost:
    gpu: str | None = None  # None: the build task's GPU (segmentation's), where build=paper runs it
    requests_per_node: int = MISSING
    media_tokens: float = MISSING  # image or video tokens per request
    text_tokens: float = MISSING
    output_tokens_per_node: float = MISSING
    prefill_tokens_per_s: float = MISSING
    decode_tokens_per_s: float = MISSING


@dataclass
class RefineCost:
    gpu: str = MISSING
    rounds: int = MISSING
    prompt_tokens: float = MISSING
    answer_tokens: float = MISSING
    reasoning_tokens: float = MISSING
    refine_tokens: float = MISSING
    prefix_caching: bool = MISSING
    prefill_tokens_per_s: float = MISSING
    decode_tokens_per_s: float = MISSING


@dataclass
class TrainStageCost:
    name: str = MISSING
    frames: int = MISSING
    x_encoder: str = MISSING  # frozen | unfrozen
    samples: float = MISSING
    samples_per_s: float = MISSING  # per GPU


@dataclass
class TrainCost:
    gpu: str = MISSING
    stages: list[TrainStageCost] = field(default_factory=list)


@dataclass
class EstimateConfig:
    # Every value is set in configs/estimate.yaml, beside the note on where it comes from.
    segmentation: SegmentationCost = field(default_factory=SegmentationCost)
    tree: TreeCost = field(default_factory=TreeCost)
    frame_captioner: CaptionerCost = field(default_factory=CaptionerCost)
    segment_captioner: CaptionerCost = field(default_factory=CaptionerCost)
    refine: RefineCost = field(default_factory=RefineCost)
    train: TrainCost = field(default_factory=TrainCost)


_POSITIVE = (
    "segmentation.source_fps",
    "segmentation.frame_step",
    "segmentation.window",
    "segmentation.window_stride",
    "segmentation.windows_per_s",
    *(
        f"{s}.{r}_tokens_per_s"
        for s in ("frame_captioner", "segment_captioner", "refine")
        for r in ("prefill", "decode")
    ),
    "refine.rounds",
)


def register_estimate_configs() -> None:
    """Store the schema estimate.yaml names. Safe to call again."""
    ConfigStore.instance().store(name="estimate_schema", node=EstimateConfig)


def load_estimate_config(overrides: list[str] | tuple[str, ...] = ()) -> EstimateConfig:
    """configs/estimate.yaml with `key=value` overrides, checked against the schema."""
    register_estimate_configs()
    cfg = OmegaConf.to_object(load_config("estimate", overrides))
    assert isinstance(cfg, EstimateConfig)
    for key in _POSITIVE:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) <= 0:  # a rate of 0 would divide by zero
            raise ConfigError(f"config key '{key}': must be positive")
    if not cfg.train.stages:
        raise ConfigError("config key 'train.stages': no stages")
    for index, stage in enumerate(cfg.train.stages):
        if stage.samples < 0 or stage.samples_per_s <= 0:
            raise ConfigError(
                f"config key 'train.stages.{index}': samples must be >= 0 and samples_per_s positive"
            )
    return cfg


@dataclass
class Figure:
    """One input of an estimate: its value, unit, and where it came from."""

    name: str
    value: float | str
    unit: str = ""
    source: str = CONFIGURED


Part = tuple[Figure, float, list[Figure]]  # a stage's GPU, GPU-seconds per video and inputs


# -- build ----------------------------------------------------------------------------------------


def windows_per_video(seconds: float, seg: SegmentationCost) -> int:
    """V-JEPA 2 windows over one video, placed as data_build/segment.py places them."""
    kept = len(range(0, int(seconds * seg.source_fps), seg.frame_step))
    return len(window_starts(kept, seg.window, seg.window_stride))


def _stage(name: str, gpu: Figure, seconds: float, videos: int, figures: list[Figure]) -> dict[str, Any]:
    return {
        "stage": name,
        "gpu": asdict(gpu),
        "gpu_s_per_video": seconds,
        "gpu_hours": seconds * videos / 3600,
        "figures": [asdict(f) for f in figures],
    }


def _served_seconds(
    prefill: float, decode: float, prefill_rate: float, decode_rate: float
) -> tuple[float, list[Figure]]:
    """GPU-seconds of a vLLM stage, with its two throughputs as figures."""
    rates = [Figure("prefill tokens/s", prefill_rate), Figure("decode tokens/s", decode_rate)]
    return prefill / prefill_rate + decode / decode_rate, rates


def missing_headline(results: dict[str, Any], key: str, prefix: str, what: str) -> str:
    """The warning for a results file without `key` (its sweeps were cut short): why they stopped, as
    the file records it under `<prefix>..._stopped`, and that `what` keeps the configured figure."""
    stopped = [
        f"{value} ({name})"
        for name, value in results["results"].items()
        if name.startswith(prefix) and name.endswith("_stopped")
    ]
    why = f"; its sweeps stopped: {', '.join(stopped)}" if stopped else ""
    return f"WARNING: {Path(results['path']).name} has no '{key}'{why}: {what} keeps the configured rate"


def _segmentation(cfg: EstimateConfig, seconds: float, results: dict[str, Any] | None) -> Part:
    seg = cfg.segmentation
    windows = windows_per_video(seconds, seg)
    unit = "V-JEPA 2 ViT-g-384 windows per second"
    rate, gpu = Figure("windows/s", seg.windows_per_s, unit), Figure("gpu", seg.gpu)
    measured = None if results is None else optional_result_number(results, "vitg_windows_per_s")
    if measured is not None:
        rate = Figure(rate.name, measured, unit, measured_source(results))
        gpu = Figure("gpu", results["environment"]["gpu"], source=measured_source(results))
    kept = f"{seg.window} of every {seg.frame_step}th frame, stride {seg.window_stride}"
    figures = [Figure("source fps", seg.source_fps), Figure("windows/video", windows, kept), rate]
    return gpu, windows / float(rate.value), figures


def _captions(cap: CaptionerCost, nodes_per_hour: Figure, output: Figure, hours: float) -> Part:
    nodes = float(nodes_per_hour.value) * hours
    prompt = cap.media_tokens + cap.text_tokens
    seconds, rates = _served_seconds(
        nodes * cap.requests_per_node * prompt,
        nodes * float(output.value),
        cap.prefill_tokens_per_s,
        cap.decode_tokens_per_s,
    )
    figures = [
        nodes_per_hour,
        Figure("requests/node", cap.requests_per_node),
        Figure("prompt tokens/request", prompt, "image/video + text"),
        output,
        *rates,
    ]
    return Figure("gpu", cap.gpu or ""), seconds, figures


def _refinement(
    ref: RefineCost, nodes_per_hour: Figure, prompt: Figure, answer: Figure, hours: float
) -> Part:
    # Each later round re-sends the conversation: the first request, then per earlier round its answer
    # and the refine request.
    added, rounds = float(answer.value) + ref.refine_tokens, ref.rounds
    if ref.prefix_caching:
        prefill = float(prompt.value) + (rounds - 1) * added
    else:
        prefill = rounds * float(prompt.value) + added * rounds * (rounds - 1) / 2
    nodes = float(nodes_per_hour.value) * hours
    seconds, rates = _served_seconds(
        nodes * prefill,
        nodes * rounds * (float(answer.value) + ref.reasoning_tokens),
        ref.prefill_tokens_per_s,
        ref.decode_tokens_per_s,
    )
    figures = [
        nodes_per_hour,
        Figure("rounds", rounds),
        prompt,
        answer,
        Figure("reasoning tokens", ref.reasoning_tokens, "per round"),
        Figure("refine request tokens", ref.refine_tokens, "per later round"),
        Figure("prefix caching", str(ref.prefix_caching).lower()),
        *rates,
    ]
    return Figure("gpu", ref.gpu), seconds, figures


def estimate_build(
    cfg: EstimateConfig,
    videos: int,
    hours_per_video: float,
    results: dict[str, Any] | None = None,
    tree: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Per-stage GPU-seconds per video and GPU-hours for `videos` videos of `hours_per_video` each;
    `results` (read_results) measures segmentation, `tree` (tree_stats) the tree's size and tokens."""
    if videos <= 0 or hours_per_video <= 0:
        raise EstimateError("--videos and --hours-per-video must be positive")

    def figure(key: str, name: str, configured: float, unit: str = "") -> Figure:
        # A tree without annotations measures no answers (0): the configured figure stays.
        if tree is not None and tree[key]:
            return Figure(name, tree[key], unit, f"{MEASURED}: tree")
        return Figure(name, configured, unit)

    fc, sc, ref, hours = cfg.frame_captioner, cfg.segment_captioner, cfg.refine, hours_per_video
    leaves = figure("leaves_per_hour", "leaves/hour", cfg.tree.leaves_per_hour, PER_HOUR)
    nodes = figure("nodes_per_hour", "nodes/hour", cfg.tree.nodes_per_hour, PER_HOUR)
    refined = figure("refined_per_hour", "refined nodes/hour", cfg.tree.refined_per_hour, PER_HOUR)
    parts = {
        "segmentation": _segmentation(cfg, hours * 3600, results),
        "frame captions": _captions(
            fc, leaves, figure("frame_output_tokens", OUTPUT, fc.output_tokens_per_node), hours
        ),
        "segment captions": _captions(
            sc, nodes, figure("segment_output_tokens", OUTPUT, sc.output_tokens_per_node), hours
        ),
        "refinement": _refinement(
            ref,
            refined,
            figure("refine_prompt_tokens", "prompt tokens", ref.prompt_tokens, "first request"),
            figure("refine_answer_tokens", "answer tokens", ref.answer_tokens, "per round"),
            hours,
        ),
    }
    build_gpu = parts["segmentation"][0]  # configured, or the GPU the results were measured on
    for name in ("frame captions", "segment captions"):
        gpu, seconds, figures = parts[name]
        if not gpu.value:  # runs in the build task, beside segmentation
            parts[name] = (replace(build_gpu), seconds, figures)
    stages = [_stage(name, gpu, seconds, videos, figures) for name, (gpu, seconds, figures) in parts.items()]

    totals: dict[str, float] = {}
    for stage in stages:
        totals[stage["gpu"]["value"]] = totals.get(stage["gpu"]["value"], 0.0) + stage["gpu_hours"]
    build = sum(s["gpu_hours"] for s in stages[:3])
    paper = {
        name: {
            "gpu": gpu_name,
            "gpu_hours": paper_hours,
            "gpu_s_per_video": paper_hours * 3600 / PAPER_VIDEOS,
            "gpu_hours_at_these_videos": paper_hours * videos / PAPER_VIDEOS,
        }
        for name, (paper_hours, gpu_name) in PAPER_BUILD_HOURS.items()
    }
    return {
        "videos": videos,
        "hours_per_video": hours_per_video,
        "stages": stages,
        "totals_by_gpu": totals,
        "segmentation + captioning": {
            "gpu_hours": build,
            "gpus": sorted({s["gpu"]["value"] for s in stages[:3]}),
        },
        "refinement": {"gpu_hours": stages[3]["gpu_hours"], "gpus": [stages[3]["gpu"]["value"]]},
        "places": _places(stages, videos),
        "paper": {"videos": PAPER_VIDEOS, **paper},
        "tree": tree,
        "warnings": (
            [missing_headline(results, "vitg_windows_per_s", "vitg", "segmentation")]
            if results is not None and results["results"].get("vitg_windows_per_s") is None
            else []
        ),
        "quick_results": _quick(results),
    }


def _places(stages: list[dict[str, Any]], videos: int) -> dict[str, dict[str, Any]]:
    """GPU time by where it runs: the build tasks (the stages on segmentation's GPU: one GPU per array
    task, busy for the sum of them per video) and the servers (the rest: the vLLM-served LLM)."""
    build_gpu = stages[0]["gpu"]["value"]
    places: dict[str, dict[str, Any]] = {}
    for stage in stages:
        place = "build tasks" if stage["gpu"]["value"] == build_gpu else "servers"
        entry = places.setdefault(
            place, {"gpu": stage["gpu"]["value"], "stages": [], "gpu_s_per_video": 0.0, "gpu_hours": 0.0}
        )
        entry["stages"].append(stage["stage"])
        entry["gpu_s_per_video"] += stage["gpu_s_per_video"]
        entry["gpu_hours"] += stage["gpu_s_per_video"] * videos / 3600
    return places


def _quick(results: dict[str, Any] | None) -> bool:
    return bool(results and results["environment"].get("quick"))


def _warning(report: dict[str, Any]) -> list[str]:
    return [QUICK_WARNING, ""] if report["quick_results"] else []


def _mark(source: str) -> str:
    return f"[{source}]"


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"  # small test runs keep 3 digits


def format_build(report: dict[str, Any]) -> str:
    """The estimate as a text table, each input with its source."""
    videos, hpv = report["videos"], report["hours_per_video"]
    row = "{:<22} {:<26} {:>12} {:>12}"
    lines = [
        *_warning(report),
        *report["warnings"],
        f"GPU-hour estimate: {videos:,} videos x {hpv:g} h ({hpv * 3600:,.1f} s each)",
        "",
        row.format("stage", "GPU", "GPU-s/video", "GPU-hours"),
    ]
    for stage in report["stages"]:
        gpu = f"{stage['gpu']['value']} {_mark(stage['gpu']['source'].split(':')[0])}"
        lines.append(
            row.format(stage["stage"], gpu, f"{stage['gpu_s_per_video']:,.1f}", _hours(stage["gpu_hours"]))
        )
    for gpu, hours in report["totals_by_gpu"].items():
        lines.append(row.format(f"total {gpu}", "", f"{hours * 3600 / videos:,.1f}", _hours(hours)))
    lines += ["", "by where it runs (build=paper: captioners in the build task, the LLM on vLLM servers):"]
    for place, entry in report["places"].items():
        lines.append(
            row.format(place, entry["gpu"], f"{entry['gpu_s_per_video']:,.1f}", _hours(entry["gpu_hours"]))
            + f"  {' + '.join(entry['stages'])}"
        )
    paper_videos = report["paper"]["videos"]
    lines += ["", f"beside the paper ({paper_videos:,} videos, 0.107 h on average):"]
    for name in PAPER_BUILD_HOURS:
        ours, paper = report[name], report["paper"][name]
        lines += [
            name,
            row.format(
                "  estimate",
                "+".join(ours["gpus"]),
                f"{ours['gpu_hours'] * 3600 / videos:,.1f}",
                _hours(ours["gpu_hours"]),
            ),
            row.format(
                "  paper", paper["gpu"], f"{paper['gpu_s_per_video']:,.1f}", _hours(paper["gpu_hours"])
            ),
        ]
        if videos != paper_videos:
            at = _hours(paper["gpu_hours_at_these_videos"])
            lines.append(row.format(f"  paper at {videos:,} videos", paper["gpu"], "", at))
    lines += ["", "inputs:"]
    for stage in report["stages"]:
        lines.append(f"  {stage['stage']}:")
        for fig in stage["figures"]:
            value = f"{fig['value']:,.6g}" if isinstance(fig["value"], (int, float)) else fig["value"]
            unit = f" ({fig['unit']})" if fig["unit"] else ""
            lines.append(f"    {fig['name']}: {value}{unit} {_mark(fig['source'])}")
    if report["tree"]:
        tree = report["tree"]
        lines.append(
            f"  tree measured on {tree['videos']} videos, {tree['hours']:.2f} h (tokens: estimate-v1)"
        )
    return "\n".join(lines) + "\n"


# -- train ----------------------------------------------------------------------------------------


def stage_samples(
    cfg: EstimateConfig, samples_seen: float | None, per_stage: list[float] | None
) -> list[float]:
    """Samples per training stage: `per_stage` as given, else `samples_seen` split in the configured
    stages' proportions, else the configured (the paper's) samples."""
    stages = cfg.train.stages
    if per_stage is not None:
        if len(per_stage) != len(stages) or any(n < 0 for n in per_stage) or not sum(per_stage):
            raise EstimateError(
                f"--stage-samples takes {len(stages)} numbers >= 0 (one per stage), not all 0"
            )
        return list(per_stage)
    configured = [float(stage.samples) for stage in stages]
    if samples_seen is None:
        return configured
    if samples_seen <= 0:
        raise EstimateError("--samples-seen must be positive")
    return [samples_seen * n / sum(configured) for n in configured]


def estimate_train(
    cfg: EstimateConfig,
    gpus: int,
    results: dict[str, Any] | None = None,
    samples_seen: float | None = None,
    per_stage: list[float] | None = None,
) -> dict[str, Any]:
    """GPU-hours of each training stage (its samples over its samples/s per GPU) and the wall-clock on
    `gpus` data-parallel GPUs. Samples per stage: `stage_samples`. `results` measures a stage's rate
    where it has the stage's headline (vljepa_stage{N}_samples_per_s); a stage it lacks keeps the
    configured rate, with a warning."""
    if gpus <= 0:
        raise EstimateError("--gpus must be positive")
    samples = stage_samples(cfg, samples_seen, per_stage)
    stages, warnings = [], []
    for number, (stage, count) in enumerate(zip(cfg.train.stages, samples, strict=True), start=1):
        rate = Figure("samples/s/GPU", stage.samples_per_s)
        gpu = Figure("gpu", cfg.train.gpu)
        measured = None
        if results is not None:
            key = f"vljepa_stage{number}_samples_per_s"
            measured = optional_result_number(results, key)
            if measured is None and count:
                warnings.append(missing_headline(results, key, f"vljepa_stage{number}", stage.name))
        if measured is not None:
            source = measured_source(results)
            figures = results["results"]
            prefix = f"vljepa_stage{number}"
            detail = f"batch {figures.get(f'{prefix}_batch')}, {figures.get(f'{prefix}_step_s')} s/step"
            if f"{prefix}_checkpointing" in figures:
                detail += (
                    f", activation checkpointing {'on' if figures[f'{prefix}_checkpointing'] else 'off'}"
                )
            rate = Figure(rate.name, measured, detail, source)
            gpu = Figure("gpu", results["environment"]["gpu"], source=source)
        gpu_hours = count / float(rate.value) / 3600
        stages.append(
            {
                "stage": stage.name,
                "frames": stage.frames,
                "x_encoder": stage.x_encoder,
                "samples": count,
                "gpu": asdict(gpu),
                "rate": asdict(rate),
                "gpu_hours": gpu_hours,
            }
        )
    totals: dict[str, float] = {}
    for stage in stages:
        totals[stage["gpu"]["value"]] = totals.get(stage["gpu"]["value"], 0.0) + stage["gpu_hours"]
    gpu_hours = sum(stage["gpu_hours"] for stage in stages)
    paper_rate = PAPER_TRAIN["gpu_hours"] / PAPER_TRAIN["samples_seen"]
    return {
        "samples_seen": sum(samples),
        "gpus": gpus,
        "stages": stages,
        "totals_by_gpu": totals,
        "gpu_hours": gpu_hours,
        "wall_clock_hours": gpu_hours / gpus,
        "paper": {**PAPER_TRAIN, "gpu_hours_at_these_samples": paper_rate * sum(samples)},
        "warnings": warnings,
        "quick_results": _quick(results),
    }


def format_train(report: dict[str, Any]) -> str:
    """The estimate as a text table: each stage's samples, rate (with its source) and GPU-hours."""
    paper, wall = report["paper"], report["wall_clock_hours"]
    row = "{:<12} {:>6} {:<9} {:>15} {:>13} {:<6} {:>12}  {}"
    lines = [
        *_warning(report),
        *report["warnings"],
        f"VL-JEPA training estimate: {report['samples_seen']:,.0f} samples seen in {len(report['stages'])} stages",
        "",
        row.format("stage", "frames", "X-encoder", "samples", "samples/s/GPU", "GPU", "GPU-hours", "rate"),
    ]
    for stage in report["stages"]:
        lines.append(
            row.format(
                stage["stage"],
                stage["frames"],
                stage["x_encoder"],
                f"{stage['samples']:,.0f}",
                f"{stage['rate']['value']:,.4g}",
                stage["gpu"]["value"],
                _hours(stage["gpu_hours"]),
                _mark(stage["rate"]["source"]),
            )
        )
    for gpu, hours in report["totals_by_gpu"].items():
        lines.append(row.format(f"total {gpu}", "", "", "", "", "", _hours(hours), "").rstrip())
    lines += [
        "",
        f"wall-clock on {report['gpus']} GPUs: {wall:,.1f} h ({wall / 24:,.1f} days)",
        f"paper: {paper['samples_seen'] / 1e9:g}B samples, {_hours(paper['gpu_hours'])} {paper['gpu']}-h "
        f"({paper['gpus']} GPUs, 4 weeks); {_hours(paper['gpu_hours_at_these_samples'])} "
        f"{paper['gpu']}-h at these samples",
    ]
    measured = [s for s in report["stages"] if s["rate"]["unit"]]
    if measured:
        lines.append("measured at:")
        lines += [f"  {s['stage']}: {s['rate']['unit']}" for s in measured]
    return "\n".join(lines) + "\n"
