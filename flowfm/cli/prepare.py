"""``flowfm prepare``: recordings with a clock (CSV / parquet / npy, or .cwa / .gt3x / .bin device files) -> the
standard labelled window folder."""
from __future__ import annotations

import time

from flowfm.argument_types import RATE_HZ, float_in
from flowfm.cli.common import add_unit


def read_options(args) -> dict:
    """The :func:`~flowfm.data.read_recording.read_recordings` options shared by prepare / embed / predict."""
    return dict(fs=args.fs, unit=args.unit, time_column=args.time_column, time_unit=args.time_unit,
                axes=args.axes.split(",") if args.axes else None, label_column=args.label_column,
                subject_column=args.subject_column, max_gap_s=args.max_gap, calibrate=not args.no_calibrate,
                detect_nonwear=not args.no_nonwear, nonwear_patience=args.nonwear_patience)


def add_read_options(p, labels: bool = True) -> None:
    """Flags of :func:`read_options` (``labels``: also --label-column / --subject-column)."""
    p.add_argument("--fs", type=RATE_HZ, default=None,
                   help="sampling rate in Hz (default: the median rate of the file's clock)")
    add_unit(p)
    p.add_argument("--time-column", default=None, help="name of the clock column (default: time / timestamp / ...)")
    p.add_argument("--time-unit", default=None, choices=["s", "ms", "iso"],
                   help="numeric clocks: seconds or milliseconds (default: detected; epoch ms above 1e11)")
    p.add_argument("--axes", default=None, help="the x,y,z column names (default: x / acc_x / accel_x / ax ...)")
    p.add_argument("--max-gap", type=float_in(0, 1e9, lo_open=True), default=1.0,
                   help="seconds without samples that split a recording into segments (default 1)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="device files (.cwa / .gt3x / .bin): skip actipy's gravity calibration")
    p.add_argument("--no-nonwear", action="store_true",
                   help="device files: keep non-wear time (default: actipy flags it and it splits the recording)")
    p.add_argument("--nonwear-patience", default=None,
                   help="device files: stationary time flagged as non-wear, e.g. 60m (default actipy's 90m)")
    if labels:
        p.add_argument("--label-column", default=None,
                       help="label column (default: label / activity / annotation / class if present)")
        p.add_argument("--subject-column", default=None,
                       help="subject column (default: one subject per file, named after the file)")
    else:
        p.set_defaults(label_column="", subject_column=None)


def run(args) -> int:
    from flowfm.data.corpus import expand_paths
    from flowfm.data.prepare import prepare_recordings

    t0 = time.perf_counter()
    summary = prepare_recordings(expand_paths(args.recordings), args.out, overwrite=args.overwrite,
                                 keep_unlabelled=args.keep_unlabelled, **read_options(args))
    print(summary)
    print(f"({time.perf_counter() - t0:.1f} s) next: flowfm embed / finetune / pretrain --data {args.out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="recordings with a clock (CSV / parquet / npy: time, x, y, z, optional label "
                                       "and subject columns; or .cwa / .gt3x / .bin device files) -> a window folder (X.npy, Y.npy, pid.npy, time.npy)")
    p.add_argument("recordings", nargs="+", help="files (or quoted globs), one subject per file unless "
                                                 "--subject-column")
    p.add_argument("--out", required=True, help="the folder to write (atomically)")
    add_read_options(p)
    p.add_argument("--keep-unlabelled", action="store_true",
                   help="keep windows no label covers for 80 %% of (label ''), e.g. for pretraining")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.set_defaults(func=run)
