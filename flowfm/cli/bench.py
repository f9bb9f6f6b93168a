"""``flowfm bench``."""
from __future__ import annotations

import argparse
import sys

from pathlib import Path
from typing import Optional


BENCH_SUITES = ("kernels", "sampling", "training", "render")


def bench_module(suite: str, checkout: Optional[Path] = None):
    """``bench.<suite>``, importing from the source checkout holding this package when ``bench`` is not on the
    path; ModuleNotFoundError with instructions when there is none (an installed wheel does not ship bench/)."""
    import importlib

    name = f"bench.{suite}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", name):
            raise
    root = checkout or Path(__file__).resolve().parents[2]
    if not (root / "bench" / "__init__.py").is_file():
        raise ModuleNotFoundError(f"the benchmark suites live in the bench/ folder of a FlowFM source checkout, "
                                  f"which is not importable here (an installed wheel does not ship it); clone the "
                                  f"repository and run `flowfm bench {suite}` or `python -m {name}` from its root")
    sys.path.insert(0, str(root))
    return importlib.import_module(name)


def run(args) -> int:
    try:
        module = bench_module(args.suite)
    except ModuleNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module.main(list(args.args))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite from a source checkout (= python -m bench.NAME)")
    p.add_argument("suite", choices=BENCH_SUITES)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the suite (flowfm bench NAME --help)")
    p.set_defaults(func=run)
