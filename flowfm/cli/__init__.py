"""The ``flowfm`` command line (``flowfm <command> --help``); one module per command, each with ``add_parser(sub)``
and ``run(args) -> exit code``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from flowfm.cli import (bench, compare, convert, demo, embed, evaluate, evaluate_generation, export, finetune, info,
                        predict, prepare, pretrain, sample, shard)
from flowfm.cli.bench import bench_module
from flowfm.cli.info import resolution_lines

COMMANDS = (demo, prepare, pretrain, embed, finetune, predict, evaluate, sample, export, shard, info, convert,
            compare, evaluate_generation, bench)
__all__ = ["main", "build_parser", "bench_module", "resolution_lines", "COMMANDS"]


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with the project's error form: one line ``error: ...`` naming the argument and what it accepts
    (plus where the usage is), exit code 2, instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="flowfm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


#: errors that are the user's input or environment, not a bug: one line on stderr and exit code 2
EXPECTED_ERRORS = (ValueError, OSError, ImportError, KeyError, AttributeError, RuntimeError)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; expected errors (:data:`EXPECTED_ERRORS`: bad values, missing / existing files, a
    checkpoint that does not check, a missing optional package, a device that is not there) end in one line
    ``error: ...`` and exit code 2; Ctrl-C / SIGTERM during pretraining writes a resumable checkpoint and exits with
    128 + the signal (130 / 143), elsewhere Ctrl-C exits with 130; anything else is a bug and keeps its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad argument (its one line is printed) or --help: the exit code, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = argv  # the command as given, for provenance records
    from flowfm.training.interrupt import TrainingInterrupted

    try:
        return args.func(args)
    except TrainingInterrupted as exc:  # a resumable checkpoint was written; the shell convention 128 + signal
        print(f"interrupted: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        lines = str(exc).strip().splitlines()
        prefix = "" if isinstance(exc, (ValueError, OSError, ImportError)) else f"{type(exc).__name__}: "
        print(f"error: {prefix}{lines[0] if lines else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
