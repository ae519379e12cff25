"""The `action100m` console script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from action100m.errors import Action100MError
from action100m.utils.atomic import write_json_atomic


class UsageError(Action100MError):
    """Options that do not go together."""


def _demo(args: argparse.Namespace) -> int:
    from action100m.config import load_config
    from action100m.tiny.demo import run_demo

    run_demo(load_config("demo", args.overrides))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from action100m.synth.generate import format_summary, generate_dataset

    summary = generate_dataset(
        args.out,
        args.videos,
        args.seed,
        benchmark_clips=args.benchmark_clips,
        validation_clips=args.validation_clips,
        size=args.size,
        fps=args.fps,
        overwrite=args.overwrite,
        progress=True,
        workers=args.workers,
    )
    print(format_summary(summary))
    return 0


def _official_export(args: argparse.Namespace) -> int:
    from action100m.dataset.official import export_official

    count = export_official(args.shards, args.out)
    print(f"official export: {count} records -> {args.out}")
    return 0


def _official_import(args: argparse.Namespace) -> int:
    from action100m.dataset.official import ImportOptions, import_official

    reencode = args.reencode_short_side is not None or args.reencode_fps is not None
    if args.crf is not None and not reencode:
        raise UsageError("--crf needs --reencode-short-side or --reencode-fps")
    options = ImportOptions(
        samples_per_shard=args.samples_per_shard,
        video=not args.no_video,
        reencode_short_side=args.reencode_short_side,
        reencode_fps=args.reencode_fps,
        crf=23 if args.crf is None else args.crf,
    )
    summary = import_official(
        args.annotations, args.videos, args.out, options, args.retry_failed, progress=True
    )
    print(
        f"official import: {summary['built']} shards built, {summary['skipped']} already done; "
        f"{summary['samples']} videos, {summary['nodes']} nodes, {summary['failures']} failures "
        f"(see {Path(args.out) / 'failures.jsonl'}) -> {Path(args.out) / 'shards'}"
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    from action100m.dataset.stats import collect_stats, format_stats, write_card

    stats = collect_stats(args.out)
    card, figure = write_card(stats, args.out)
    print(format_stats(stats), end="")
    print(f"\nwrote {card} and {figure}")
    return 0


def _report_scaling(args: argparse.Namespace) -> int:
    from action100m.report.scaling import scaling_report

    if not (args.runs or args.wandb_project):
        raise Action100MError("give --runs (a folder of result JSONs) or --wandb-project")
    if args.wandb_project and not args.runs:
        from action100m.report.wandb_report import results_from_project

        results = results_from_project(args.wandb_project, args.wandb_entity, args.metric)
        runs = Path(args.out) / "wandb_results"
        for k, result in enumerate(results):
            write_json_atomic(runs / f"result-{k:05d}.json", result)
    else:
        runs = args.runs
    report = scaling_report(runs, args.out, args.metric, args.x)
    print((Path(args.out) / "scaling.md").read_text(encoding="utf-8"))
    if args.wandb_project:
        from action100m.report.wandb_report import publish

        print(f"published to W&B: {publish(report, Path(args.out), args.wandb_project, args.wandb_entity)}")
    print(f"wrote {Path(args.out) / 'scaling.png'}, scaling.md and scaling.json")
    return 0


def _view(args: argparse.Namespace) -> int:
    from action100m.view import build_site, release_source, shard_source

    if (args.shards is None) == (args.annotations is None):
        raise UsageError("give a shard set (OUT) or --annotations, not both")
    if args.videos_dir is not None and args.annotations is None:
        raise UsageError("--videos-dir goes with --annotations (a shard set holds its videos)")
    selection = args.videos
    if selection is not None and len(selection) == 1 and selection[0].isdigit():
        selection = int(selection[0])
    elif args.annotations is not None and selection is not None and Path(selection[0]).is_dir():
        raise UsageError(f"--videos selects videos; give the folder {selection[0]} as --videos-dir")
    if args.annotations is not None:
        source = release_source(args.annotations, args.videos_dir, selection)
    else:
        source = shard_source(args.shards, selection)
    summary = build_site(source, args.out, args.per_page, args.workers, progress=True)
    print(
        f"view: {summary['videos']} videos, {summary['nodes']} nodes, {summary['pages']} index page(s) "
        f"-> {Path(args.out) / 'index.html'}"
    )
    return 0


def _estimate_build(args: argparse.Namespace) -> int:
    from action100m.report.estimate import estimate_build, format_build, load_estimate_config
    from action100m.report.estimate_inputs import read_results, tree_stats

    cfg = load_estimate_config(args.overrides)
    results = read_results(args.results, args.allow_quick) if args.results else None
    tree = tree_stats(args.tree, cfg.tree.min_refine_duration) if args.tree else None
    report = estimate_build(cfg, args.videos, args.hours_per_video, results, tree)
    print(format_build(report), end="")
    if args.out:
        print(f"wrote {write_json_atomic(args.out, report)}")
    return 0


def _estimate_train(args: argparse.Namespace) -> int:
    from action100m.report.estimate import estimate_train, format_train, load_estimate_config
    from action100m.report.estimate_inputs import read_results

    results = read_results(args.results, args.allow_quick) if args.results else None
    cfg = load_estimate_config(args.overrides)
    report = estimate_train(cfg, args.gpus, results, args.samples_seen, args.stage_samples)
    print(format_train(report), end="")
    if args.out:
        print(f"wrote {write_json_atomic(args.out, report)}")
    return 0


def _add_estimate(commands: argparse._SubParsersAction) -> None:
    estimate = commands.add_parser(
        "estimate", help="GPU-hour estimates of the build and of training, beside the paper's figures"
    )
    actions = estimate.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build",
        help="GPU-hours per stage: segmentation, frame and segment captions, refinement",
        description="Throughputs and per-node work come from configs/estimate.yaml (marked configured) "
        "unless --from or --tree measured them (marked measured).",
    )
    build.add_argument("--videos", type=int, required=True, help="videos to build")
    build.add_argument("--hours-per-video", type=float, required=True, help="mean video length in hours")
    build.add_argument(
        "--tree", metavar="RECORDS", help="measure tree size and tokens: release annotations or a shard set"
    )
    train = actions.add_parser("train", help="GPU-hours and wall-clock of a VL-JEPA training budget")
    samples = train.add_mutually_exclusive_group()
    samples.add_argument(
        "--samples-seen",
        type=float,
        help="training samples seen, split over the stages as the configured mix (default: the paper's "
        "3.32B: 2.46B, 0.74B and 0.12B)",
    )
    samples.add_argument(
        "--stage-samples",
        type=float,
        nargs="+",
        metavar="N",
        help="samples of each stage, in order (train.stages in configs/estimate.yaml)",
    )
    train.add_argument("--gpus", type=int, default=192, help="data-parallel GPUs (default 192, the paper's)")
    for action, func in ((build, _estimate_build), (train, _estimate_train)):
        action.add_argument(
            "--from",
            dest="results",
            metavar="RESULTS.json",
            help="measured figures from benchmarks/gpu_paper_presets.py",
        )
        action.add_argument(
            "--allow-quick", action="store_true", help="accept results made with --quick (reduced models)"
        )
        action.add_argument("--out", metavar="JSON", help="also write the estimate as JSON")
        action.add_argument(
            "overrides", nargs="*", help="config overrides, key=value (configs/estimate.yaml)"
        )
        action.set_defaults(func=func)


def _add_official(commands: argparse._SubParsersAction) -> None:
    official = commands.add_parser(
        "official", help="the official release format: export shards, import annotations"
    )
    actions = official.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="finished shards -> release rows (.parquet, .json or .jsonl)")
    export.add_argument(
        "--shards", required=True, help="a shard set (OUT or OUT/shards); finished shards only"
    )
    export.add_argument(
        "--out", required=True, help="X.parquet, X.json (column-oriented, as the sample) or X.jsonl"
    )
    export.set_defaults(func=_official_export)
    imp = actions.add_parser(
        "import",
        help="release annotations + your videos -> training shards",
        description="Records are checked against the schema only, never against the videos: your copy of a "
        "video may be cut or encoded differently from the one the release was made from.",
    )
    imp.add_argument(
        "--annotations", "--parquet", required=True, metavar="FILE", help="release .parquet, .json or .jsonl"
    )
    imp.add_argument(
        "--videos", metavar="DIR", help="folder with <video_uid>.mp4|webm|mkv|mov|avi or <video_uid>/<file>"
    )
    imp.add_argument("--out", required=True, help="the shard set to write (OUT/shards, failures.jsonl, ...)")
    imp.add_argument(
        "--samples-per-shard", type=int, default=100, metavar="N", help="videos per shard (default 100)"
    )
    imp.add_argument(
        "--reencode-short-side", type=int, metavar="S", help="re-encode: short side at most S pixels"
    )
    imp.add_argument("--reencode-fps", type=float, metavar="F", help="re-encode: at most F frames per second")
    imp.add_argument("--crf", type=int, metavar="C", help="re-encode: H.264 CRF (default 23)")
    imp.add_argument("--no-video", action="store_true", help="records only: no video looked up or stored")
    imp.add_argument("--retry-failed", action="store_true", help="rebuild finished shards that had failures")
    imp.set_defaults(func=_official_import)


def _add_view(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser(
        "view",
        help="a static site to browse a shard set or release annotations (opens from file://)",
        description="Writes SITE/index.html (the videos, paginated) and a page per video: the player, "
        "the segment tree as a timeline, each node's captions and annotation, leaf thumbnails.",
    )
    view.add_argument("shards", nargs="?", metavar="OUT", help="a shard set (OUT or OUT/shards)")
    view.add_argument(
        "--annotations", metavar="FILE", help="instead of OUT: release .parquet, .json or .jsonl"
    )
    view.add_argument(
        "--videos-dir",
        metavar="DIR",
        help="with --annotations: folder with <video_uid>.mp4|webm|mkv|mov|avi or <video_uid>/<file>; "
        "a video not there gets a page without a player",
    )
    view.add_argument(
        "--videos",
        nargs="+",
        metavar="N|UID",
        help="one number N: the first N videos by video_uid; else the video_uids to show (default all)",
    )
    view.add_argument(
        "--out", required=True, metavar="SITE", help="the site folder (new, empty or a viewer site)"
    )
    view.add_argument(
        "--per-page", type=int, default=100, metavar="K", help="videos per index page (default 100)"
    )
    view.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes making video pages (default 1; the same bytes for any)",
    )
    view.set_defaults(func=_view)


def _tiny_model(args: argparse.Namespace) -> int:
    from action100m.tiny.backends import save_tiny_model

    print(save_tiny_model(TINY_MODEL_KINDS[args.kind], args.out, seed=args.seed))
    return 0


# `action100m tiny-model KIND`: the saved tiny models (action100m/tiny/backends.py SAVED_MODELS)
TINY_MODEL_KINDS = {
    "llm": "tiny-llama-bpe",
    "mllama": "tiny-mllama",
    "perception-lm": "tiny-perception-lm",
    "gpt-oss": "tiny-gpt-oss",
}


def _serving(args: argparse.Namespace) -> int:
    from action100m.backends.support import PRESETS, check_routes, format_matrix, routes

    presets = [o.split("=", 1)[1] for o in args.overrides if o.startswith("build=")] or list(PRESETS)
    found = routes(presets, [o for o in args.overrides if not o.startswith("build=")])
    if args.check:
        found = check_routes(found, args.vllm_venv)
    print(format_matrix(found), end="")
    return 1 if any(route.accepted is False for route in found) else 0  # a route no engine accepts


def _prefetch(args: argparse.Namespace) -> int:
    from action100m.cluster.prefetch import prefetch

    prefetch(args.overrides, dry_run=args.dry_run, served=args.served)
    return 0


def _cluster_smoke(args: argparse.Namespace) -> int:
    from action100m.cluster.smoke import run_cluster_smoke

    run_cluster_smoke(Path(args.out), seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="action100m", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the main job end to end on a CPU: build, train at three scales, evaluate, report"
    )
    demo.add_argument("overrides", nargs="*", help="config overrides, key=value (see configs/demo.yaml)")
    demo.set_defaults(func=_demo)
    synth = commands.add_parser("synth", help="write a SynthActions dataset (videos, manifest, ground truth)")
    synth.add_argument("--out", required=True, help="output folder; a non-empty one needs --overwrite")
    synth.add_argument("--videos", type=int, required=True, help="number of instructional videos")
    synth.add_argument("--seed", type=int, required=True, help="same seed, same bytes")
    synth.add_argument(
        "--benchmark-clips", type=int, default=0, help="zero-shot test clips, in OUT/benchmark (default 0)"
    )
    synth.add_argument(
        "--validation-clips",
        type=int,
        default=0,
        help="zero-shot clips of other held-out compositions, in OUT/validation, to choose settings on (default 0)",
    )
    synth.add_argument("--size", default="128", help="N (NxN) or WxH, up to 1280x720 (default 128)")
    synth.add_argument("--fps", type=float, default=10.0, help="frames per second, 4-30 (default 10)")
    synth.add_argument("--overwrite", action="store_true", help="replace the SynthActions data in --out")
    synth.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes rendering videos (default 1; the same bytes for any)",
    )
    synth.set_defaults(func=_synth)
    _add_official(commands)
    _add_view(commands)
    stats = commands.add_parser(
        "stats", help="dataset statistics; writes OUT/dataset_card.md and a histogram"
    )
    stats.add_argument("out", help="a shard set (OUT or OUT/shards)")
    stats.set_defaults(func=_stats)
    report = commands.add_parser("report", help="reports over evaluation results")
    kinds = report.add_subparsers(dest="action", required=True)
    scaling = kinds.add_parser(
        "scaling", help="data-scaling curve, power-law fit and table from result JSONs"
    )
    scaling.add_argument("--runs", help="folder searched for eval result JSONs")
    scaling.add_argument(
        "--wandb-project", help="read results from (and publish the report to) this W&B project"
    )
    scaling.add_argument("--wandb-entity", help="W&B entity (user or team)")
    scaling.add_argument(
        "--metric",
        default="headline",
        help="metric to plot; headline (default): top1, and t2v_r1 for retrieval benchmarks",
    )
    scaling.add_argument(
        "--x",
        default="auto",
        choices=["auto", "samples_seen", "dataset_size"],
        help="x axis; auto: samples seen, or the dataset size when every run saw the same number; "
        "dataset_size for runs that kept their best checkpoint by validation",
    )
    scaling.add_argument("--out", required=True, help="folder for scaling.png, scaling.md, scaling.json")
    scaling.set_defaults(func=_report_scaling)
    _add_estimate(commands)
    tiny = commands.add_parser(
        "tiny-model", help="save a tiny random-init model with a real tokenizer to a directory (for vLLM)"
    )
    tiny.add_argument(
        "kind",
        choices=list(TINY_MODEL_KINDS),
        help="llm: a 2-layer Llama with a byte-level BPE tokenizer; mllama, perception-lm, gpt-oss: the "
        "paper's architectures at toy size, with their processors",
    )
    tiny.add_argument("--out", required=True, help="the model directory")
    tiny.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    tiny.set_defaults(func=_tiny_model)
    fetch = commands.add_parser(
        "prefetch",
        help="download every hub file a build loads into the HF cache (on a login node, before an offline build)",
    )
    fetch.add_argument("overrides", nargs="*", help="build config overrides, key=value (e.g. build=paper)")
    fetch.add_argument(
        "--dry-run", action="store_true", help="list the files and what is missing; fetch none"
    )
    fetch.add_argument(
        "--served", action="store_true", help="also the models of vLLM-served backends (kind=openai)"
    )
    fetch.set_defaults(func=_prefetch)
    serving = commands.add_parser(
        "serving",
        help="the serving support matrix: each model role of each build preset, its engine, model and "
        "request kind; --check asks the pinned engines whether they accept it",
    )
    serving.add_argument("overrides", nargs="*", help="build=PRESET (repeatable; default all) and overrides")
    serving.add_argument(
        "--check", action="store_true", help="ask vLLM (in its venv) and transformers on tiny models"
    )
    serving.add_argument("--vllm-venv", help="the vLLM venv [$VLLM_VENV or .venv-vllm]")
    serving.set_defaults(func=_serving)
    smoke = commands.add_parser(
        "cluster-smoke", help="serve, build, train with a requeue, evaluate: on a live one-node SLURM cluster"
    )
    smoke.add_argument("--out", default="runs/cluster-smoke", help="job logs, shards, checkpoints, results")
    smoke.add_argument("--seed", type=int, default=0, help="SynthActions and tiny-model seed (default 0)")
    smoke.set_defaults(func=_cluster_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # OSError: what the machine refused (a full disk, an output that is a file); it names the path
    except (Action100MError, OSError) as err:
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"action100m {command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
