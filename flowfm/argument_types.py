"""argparse value types with bounds, shared by every ``flowfm`` command (and ``pretrain`` options that
``compare`` variants parse): a value out of range ends in argparse's one-line error naming the accepted range,
before any work."""
from __future__ import annotations

import argparse
import math

__all__ = ["int_in", "float_in", "SEED", "THREADS", "BATCH", "EPOCHS", "RATE_HZ", "FRACTION"]


def int_in(lo: int, hi: int):
    """An argparse ``type``: an integer in ``lo..hi`` (inclusive), else the one-line argparse error naming the
    range. Upper bounds keep absurd values (``--steps 10**9``, ``--n 10**12``) from running for days or
    allocating terabytes."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse ``type``: a finite number in the interval from ``lo`` to ``hi`` (``*_open``: that end
    excluded), else the one-line argparse error naming the interval (NaN and inf included)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}") from None
        inside = math.isfinite(value) and (lo < value if lo_open else lo <= value) and \
            (value < hi if hi_open else value <= hi)
        if not inside:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: bounds several commands share
SEED = int_in(0, 2**32 - 1)
THREADS = int_in(1, 1024)
BATCH = int_in(1, 65536)
EPOCHS = int_in(1, 100_000)
RATE_HZ = float_in(0, 100_000, lo_open=True)
FRACTION = float_in(0, 1, hi_open=True)
