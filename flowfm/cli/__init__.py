"""The ``flowfm`` command line (``flowfm <command> --help``); one module per command, each with ``add_parser(sub)``
and ``run(args) -> exit code``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from flowfm.cli import (bench, compare, convert, demo, embed, evaluate, evaluate_generation, info, pretrain, sample,
                        shard)
from flowfm.cli.bench import bench_module
from flowfm.cli.info import resolution_lines

COMMANDS = (demo, pretrain, evaluate, sample, embed, shard, info, convert, compare, evaluate_generation, bench)
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
    except (ValueError, OSError, KeyError, AttributeError, RuntimeError) as exc:
        # every expected failure (bad input, missing or unreadable files, a full disk, a checkpoint that does not
        # match its config, a device that is not there) is one line and exit code 2, never a traceback
        message = str(exc).strip().splitlines()
        print(f"error: {type(exc).__name__ + ': ' if not isinstance(exc, ValueError) else ''}"
              f"{message[0] if message else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
