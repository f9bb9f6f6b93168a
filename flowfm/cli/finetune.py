"""``flowfm finetune``: train an activity classifier on a labelled dataset and save it (encoder + head)."""
from __future__ import annotations

import time
from pathlib import Path

from flowfm.argument_types import BATCH, EPOCHS, FRACTION, RATE_HZ, SEED, int_in
from flowfm.cli.common import add_overwrite, add_unit, at_model_rate, declared_fs, load_dataset


def run(args) -> int:
    from flowfm.checkpoint import load_model
    from flowfm.classifier import train_classifier
    from flowfm.run_folder import RunFolderError

    if Path(args.out).exists() and not (args.overwrite and Path(args.out).is_dir()):
        raise RunFolderError(f"--out {args.out} already exists; pass --overwrite to replace the classifier there, or "
                             f"another --out")
    model = load_model(args.checkpoint)
    ds = load_dataset(args.data, args.unit).labelled()
    x = at_model_rate(ds.x, args.fs if args.fs is not None else declared_fs(args.data), model.data_spec, args.data)
    t0 = time.perf_counter()
    clf = train_classifier(model, x, ds.y, ds.pid, args.mode, seed=args.seed, max_epochs=args.max_epochs,
                           patience=args.patience, batch_size=args.batch_size, val_fraction=args.val_fraction,
                           metadata={"checkpoint": str(args.checkpoint), "data": str(args.data),
                                     "command": " ".join(["flowfm", *args.argv])},
                           progress=None if args.quiet else print)
    clf.save(args.out)
    print(f"{args.mode} classifier of {len(clf.label_names)} classes ({', '.join(clf.label_names)}) trained in "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}; next: flowfm predict --model {args.out} --data ...")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="train an activity classifier (pretrained encoder + head) on a labelled "
                                        "dataset and save it for flowfm predict")
    p.add_argument("--checkpoint", required=True, help="pretrained model folder (e.g. RUN/model) or a shipped name")
    p.add_argument("--data", required=True, help="'hapt' or a labelled folder (X.npy, Y.npy, pid.npy)")
    p.add_argument("--fs", type=RATE_HZ, default=None, help="rate of the folder's windows (default: meta.json)")
    add_unit(p)
    p.add_argument("--mode", default="finetune", choices=["linear", "mlp", "finetune"],
                   help="linear: logistic regression on standardised frozen z; mlp: 2-layer head on frozen z; "
                        "finetune (default): encoder + head, all weights")
    p.add_argument("--max-epochs", type=EPOCHS, default=30)
    p.add_argument("--patience", type=int_in(1, 100_000), default=5, help="epochs without a better validation macro-F1")
    p.add_argument("--batch-size", type=BATCH, default=128)
    p.add_argument("--val-fraction", type=FRACTION, default=0.2,
                   help="share of the labelled subjects held out for early stopping (none with < 3 subjects)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="classifier folder to write (atomically)")
    add_overwrite(p, "the classifier folder")
    p.set_defaults(func=run)
