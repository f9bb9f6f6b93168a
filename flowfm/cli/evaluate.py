"""``flowfm evaluate``."""
from __future__ import annotations

import json

from flowfm.argument_types import BATCH, EPOCHS, FRACTION, SEED, THREADS, int_in
from flowfm.cli.common import add_unit, at_model_rate, declared_fs, load_dataset
from flowfm.encoder import READOUTS
from flowfm.evaluation.subject_split import SPLITS, parse_subject_ids, subject_mask


def run(args) -> int:
    import torch

    from flowfm.data.atomic import atomic_write_text
    from flowfm.evaluation import FitConfig, encoder_model, evaluate_encoder, report_markdown
    from flowfm.evaluation.outputs import (per_class_markdown, plot_confusion, provenance, report_paths,
                                           write_predictions_csv)

    if args.threads:
        torch.set_num_threads(args.threads)
    mode = args.mode or ("scratch" if args.encoder == "scratch" else "linear")
    if args.encoder == "scratch" and mode not in ("finetune", "scratch"):
        raise ValueError("--encoder scratch trains the preset's encoder from a random init (supervised from "
                         "scratch) and needs --mode finetune; a frozen random encoder is --encoder random")
    if args.encoder == "scratch":
        mode = "scratch"
    if args.encoder == "random" and mode == "finetune":
        raise ValueError("--encoder random is the frozen random-init encoder (--mode linear or mlp); finetuning "
                         "from a random init is --encoder scratch")
    if not (args.checkpoint or args.encoder):
        raise ValueError("pass --checkpoint DIR (a model folder of any method) or --encoder random / scratch")
    ds = load_dataset(args.data, args.unit).labelled()
    selection = {"split": args.split, "subjects": parse_subject_ids(args.subjects),
                 "exclude": parse_subject_ids(args.exclude_subjects)}
    if any(v is not None for v in selection.values()):
        ds = ds.subset(subject_mask(ds.pid, **selection))
    model, name = encoder_model(args.checkpoint or args.encoder, preset=args.preset, in_channels=ds.x.shape[1],
                                window=ds.x.shape[2], base_seed=args.seed)
    from flowfm.data.window_spec import WindowSpec

    spec = getattr(model, "data_spec", None) or WindowSpec.default(ds.x.shape[1], ds.x.shape[2])
    x = at_model_rate(ds.x, declared_fs(args.data), spec, args.data)
    config = FitConfig(max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size,
                       val_fraction=args.val_fraction)
    paths = report_paths(args.out) if args.out else {}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite or another --out")
    report = evaluate_encoder(model, x, ds.y, ds.pid, mode, seeds=args.seeds, n_folds=args.folds,
                              loso=args.loso, label_subjects=args.label_subjects, draws=args.draws, config=config,
                              name=name, data=args.data, progress=None if args.quiet else print,
                              readout=args.readout, keep_predictions=bool(args.out))
    print(f"{name} ({mode}): macro-F1 {report['macro_f1_mean']:.3f} +- {report['macro_f1_sd']:.3f}, kappa "
          f"{report['kappa_mean']:.3f} ({report['folds']} subject-wise folds, label subjects "
          f"{args.label_subjects or 'all'}, {args.seeds} seed(s), {report['seconds']:.0f} s)")
    if args.out:
        atomic_write_text(paths["csv"], write_predictions_csv(report, ds.y, ds.pid))
        for s in report["per_seed"]:
            for d in s["draws"]:
                d.pop("y_pred", None)
        report["provenance"] = provenance([ds.x, ds.y, ds.pid], args.argv)
        atomic_write_text(paths["json"], json.dumps(report, indent=2))
        atomic_write_text(paths["md"], report_markdown(report) + per_class_markdown(report))
        plot_confusion(report, paths["png"])
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="subject-wise evaluation of an encoder: linear probe, MLP head on frozen "
                                        "features, or fine-tuning (docs/design.md §5)")
    p.add_argument("--data", default="hapt")
    add_unit(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="model folder of any method (flowfm, diffusion, ssl-wearables), e.g. "
                                          "RUN/model")
    src.add_argument("--encoder", choices=["random", "scratch"],
                     help="random: the --preset encoder at a random init, frozen (re-drawn per seed); scratch: "
                          "the same architecture trained from a random init (supervised baseline, mode finetune)")
    p.add_argument("--preset", default="small", choices=["small", "harnet10", "tiny"])
    p.add_argument("--mode", default=None, choices=["linear", "mlp", "finetune"],
                   help="linear: logistic regression on frozen z; mlp: 2-layer head on frozen z; finetune: encoder "
                        "+ head, all weights (default: linear, or finetune with --encoder scratch)")
    p.add_argument("--readout", default="z", choices=list(READOUTS),
                   help="frozen features of --mode linear / mlp: z (the encoder's final pooled output) or stages "
                        "(the pooled outputs of every encoder stage, concatenated)")
    p.add_argument("--split", default=None, choices=list(SPLITS),
                   help="evaluate on one part of the fixed design / report subject split only (every third "
                        "subject in sorted order is a report subject; docs/design.md §5)")
    p.add_argument("--subjects", default=None, metavar="IDS", help="evaluate on these subjects only (comma list)")
    p.add_argument("--exclude-subjects", default=None, metavar="IDS", help="leave these subjects out (comma list)")
    p.add_argument("--folds", type=int_in(2, 1000), default=5, help="GroupKFold over subjects")
    p.add_argument("--loso", action="store_true", help="leave one subject out instead of --folds")
    p.add_argument("--label-subjects", type=int_in(1, 100_000), default=None,
                   help="low-label regime: labels of only k training subjects per fold (default: all)")
    p.add_argument("--draws", type=int_in(1, 1000), default=4,
                   help="label-subject draws per fold in the low-label regime")
    p.add_argument("--seeds", type=int_in(1, 1000), default=1,
                   help="evaluation seeds 0..N-1 (same folds/draws for every model)")
    p.add_argument("--seed", type=SEED, default=0, help="random-init seed offset for --encoder random / scratch")
    p.add_argument("--val-fraction", type=FRACTION, default=0.2,
                   help="share of the labelled training subjects held out for early stopping (mlp/finetune)")
    p.add_argument("--max-epochs", type=EPOCHS, default=30)
    p.add_argument("--patience", type=int_in(1, 100_000), default=5, help="epochs without a better validation macro-F1")
    p.add_argument("--batch-size", type=BATCH, default=128)
    p.add_argument("--threads", type=THREADS, default=None, help="torch.set_num_threads")
    p.add_argument("--quiet", action="store_true", help="no per-seed progress lines")
    p.add_argument("--out", default=None,
                   help="report base name: writes OUT.json, OUT.md, OUT_confusion.png and OUT_predictions.csv "
                        "(a .json / .md suffix is dropped first)")
    p.add_argument("--overwrite", action="store_true", help="replace those files if they exist")
    p.set_defaults(func=run)

