"""The ``flowfm`` command line (``flowfm <command> --help``); one module per command, each with ``add_parser(sub)``
and ``run(args) -> exit code``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from flowfm.cli import (bench, compare, convert, demo, embed, evaluate, evaluate_generation, export, info, pretrain,
                        sample, shard)
from flowfm.cli.bench import bench_module
from flowfm.cli.info import resolution_lines

COMMANDS = (demo, pretrain, evaluate, sample, embed, shard, info, convert, compare, evaluate_generation, bench, export)
__all__ = ["main", "build_parser", "bench_module", "resolution_lines", "COMMANDS"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowfm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
