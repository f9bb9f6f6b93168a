"""``flowfm shard``."""
from __future__ import annotations

import sys
import time

from flowfm.cli.common import add_unit


def run(args) -> int:
    from flowfm.data.corpus import expand_paths
    from flowfm.data.shards import write_shards

    t0 = time.perf_counter()
    try:
        report = write_shards(expand_paths(args.recordings), args.fs, args.out, args.windows_per_shard,
                              unit=args.unit)
    except (FileExistsError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in report.skipped:
        print(f"skipped {path}: shorter than one 10 s window")
    print(f"{report.n_windows} windows in {len(report.shards)} shard(s) -> {args.out} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("shard", help="cut continuous recordings into 30 Hz windows written as shard folders "
                                     "(OUT/shard_00000/X.npy ...) for flowfm pretrain --data OUT")
    p.add_argument("recordings", nargs="+", help=".npy or .csv files of shape (T, C) in g (or a quoted glob)")
    p.add_argument("--fs", type=float, required=True, help="sampling rate of the recordings in Hz")
    add_unit(p)
    p.add_argument("--out", required=True, help="output folder (must not hold shard_* folders yet)")
    p.add_argument("--windows-per-shard", type=int, default=20_000,
                   help="windows per shard folder (20,000 x 3 x 300 float32 = 72 MB, the memory bound)")
    p.set_defaults(func=run)

