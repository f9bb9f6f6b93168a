"""``flowfm shard``."""
from __future__ import annotations

import sys
import time

from flowfm.argument_types import RATE_HZ, int_in
from flowfm.cli.common import add_overwrite, add_unit


def run(args) -> int:
    from flowfm.data.corpus import expand_paths
    from flowfm.data.shards import write_shards
    from flowfm.run_folder import owned

    t0 = time.perf_counter()
    try:
        with owned(args.out, overwrite=args.overwrite, what="shard corpus", writes=("shard_*",), resumable=False):
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
    p.add_argument("--fs", type=RATE_HZ, required=True, help="sampling rate of the recordings in Hz")
    add_unit(p)
    p.add_argument("--out", required=True, help="output folder (new or empty; locked while it is written)")
    add_overwrite(p, "the shards in --out")
    p.add_argument("--windows-per-shard", type=int_in(1, 10_000_000), default=20_000,
                   help="windows per shard folder (20,000 x 3 x 300 float32 = 72 MB, the memory bound)")
    p.set_defaults(func=run)

