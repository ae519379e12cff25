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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="action100m", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the parts of the main job built so far")
    demo.add_argument("overrides", nargs="*", help="config overrides, key=value (see configs/demo.yaml)")
    demo.set_defaults(func=_demo)
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
