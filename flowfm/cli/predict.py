"""``flowfm predict``: per-window activity predictions of a saved classifier -> CSV."""
from __future__ import annotations

import csv
import io
import time

from flowfm.argument_types import BATCH, RATE_HZ
from flowfm.cli.common import add_overwrite, add_unit


def run(args) -> int:
    import numpy as np

    from flowfm.classifier import ActivityClassifier
    from flowfm.cli.embed import model_windows
    from flowfm.data.atomic import atomic_write_text

    from flowfm.run_folder import check_new_file

    out = check_new_file(args.out, args.overwrite)
    clf = ActivityClassifier.load(args.model)
    t0 = time.perf_counter()
    header = ["source", "pid", "window_index", "start_time", "start_time_utc", "predicted", "true_label"] + \
        [f"p_{name}" for name in clf.label_names]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    n = 0
    for name, x, pid, start, y in model_windows(args.data, args.fs, args.unit, clf.data_spec):
        proba = clf.predict_proba(x, args.batch_size)
        pred = np.asarray(clf.label_names)[proba.argmax(axis=1)]
        for i in range(len(x)):
            t = None if start is None else float(start[i])
            utc = (np.datetime64(int(round(t * 1000)), "ms").astype(str) + "Z") if t is not None and t > 1e8 else ""
            writer.writerow([name, pid[i], i, "" if t is None else f"{t:.3f}", utc, pred[i],
                             "" if y is None else y[i]] + [f"{p:.6f}" for p in proba[i]])
        n += len(x)
    atomic_write_text(out, buf.getvalue())
    print(f"{n} windows predicted ({', '.join(clf.label_names)}) in {time.perf_counter() - t0:.1f} s -> {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="per-window predictions of a classifier saved by flowfm finetune -> CSV "
                                       "(start time, predicted label, one probability column per class)")
    p.add_argument("--model", required=True, help="classifier folder written by flowfm finetune")
    p.add_argument("--data", nargs="+", required=True,
                   help="recordings with a clock (CSV / parquet), window folders, or headerless .npy/.csv recordings "
                        "(need --fs); resampled to the classifier's rate")
    p.add_argument("--fs", type=RATE_HZ, default=None, help="sampling rate in Hz (headerless recordings: required)")
    add_unit(p)
    p.add_argument("--batch-size", type=BATCH, default=256)
    p.add_argument("--out", required=True, help="the CSV to write (atomically)")
    add_overwrite(p, "the --out file")
    p.set_defaults(func=run)
