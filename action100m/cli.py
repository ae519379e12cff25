"""The `action100m` console script."""

from __future__ import annotations

import argparse
import sys

from action100m.errors import Action100MError


def _demo(args: argparse.Namespace) -> int:
    from action100m.config import load_config
    from action100m.demo import run_demo

    run_demo(load_config("demo", args.overrides))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from action100m.synth.generate import format_summary, generate_dataset

    summary = generate_dataset(
        args.out, args.videos, args.seed, benchmark_clips=args.benchmark_clips, size=args.size, fps=args.fps,
        overwrite=args.overwrite, progress=True,
    )  # fmt: skip
    print(format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="action100m", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the parts of the main job built so far")
    demo.add_argument("overrides", nargs="*", help="config overrides, key=value (see configs/demo.yaml)")
    demo.set_defaults(func=_demo)
    synth = commands.add_parser("synth", help="write a SynthActions dataset (videos, manifest, ground truth)")
    synth.add_argument("--out", required=True, help="output folder; a non-empty one needs --overwrite")
    synth.add_argument("--videos", type=int, required=True, help="number of instructional videos")
    synth.add_argument("--seed", type=int, required=True, help="same seed, same bytes")
    synth.add_argument("--benchmark-clips", type=int, default=0, help="zero-shot clips (default 0)")
    synth.add_argument("--size", default="128", help="N (NxN) or WxH, up to 1280x720 (default 128)")
    synth.add_argument("--fps", type=float, default=10.0, help="frames per second, 4-30 (default 10)")
    synth.add_argument("--overwrite", action="store_true", help="replace the SynthActions data in --out")
    synth.set_defaults(func=_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Action100MError as err:
        print(f"action100m {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
