"""``flowfm compare``."""
from __future__ import annotations

from flowfm.encoder import READOUTS
from flowfm.argument_types import EPOCHS, THREADS, int_in
from flowfm.cli.common import int_list, label_regimes


def run(args) -> int:
    import torch

    from flowfm.compare import CompareConfig, run_compare

    if args.threads:
        torch.set_num_threads(args.threads)
    fields = dict(data=args.data, out=args.out)
    for name in ("seeds", "epochs", "draws", "finetune_draws", "folds", "preset"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.methods:
        fields["methods"] = tuple(args.methods.split(","))
    if args.modes:
        fields["modes"] = tuple(args.modes.split(","))
    if args.label_subjects:
        fields["label_subjects"] = label_regimes(args.label_subjects)
    if args.finetune_label_subjects:
        fields["finetune_label_subjects"] = label_regimes(args.finetune_label_subjects)
    fields["evaluate_only"] = args.evaluate_only
    fields["readout"] = args.readout
    fields["inductive"] = args.inductive
    fields["split"] = args.split
    fields["time_to_quality"] = not args.skip_time_to_quality
    if args.ttq_epochs:
        fields["ttq_epochs"] = tuple(int_list(args.ttq_epochs))
    if args.variant:
        import shlex

        variants = {}
        for spec in args.variant:
            name, sep, extra = spec.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"--variant takes NAME='PRETRAIN ARGS', got {spec!r}")
            variants[name.strip()] = shlex.split(extra)
        fields["variants"] = variants
    cfg = CompareConfig.quick_config(**fields) if args.quick else CompareConfig(**fields)
    run_compare(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="the whole comparison: pretrain FlowFM, diffusion and SSL-Wearables for every "
                                       "seed, evaluate them with random-init and from-scratch rows, paired "
                                       "differences, time to quality; resumable")
    p.add_argument("--data", default="hapt", help="'hapt' or a folder in the X.npy/Y.npy/pid.npy layout")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--methods", default=None, help="comma list (default flowfm,diffusion,ssl-wearables)")
    p.add_argument("--seeds", type=int_in(1, 1000), default=None, help="pretraining = evaluation seeds (default 5)")
    p.add_argument("--epochs", type=EPOCHS, default=None, help="pretraining epochs of every method (default 12)")
    p.add_argument("--preset", default=None, choices=["small", "harnet10", "tiny"])
    p.add_argument("--modes", default=None, help="comma list of linear,mlp,finetune (default linear)")
    p.add_argument("--readout", default="z", choices=list(READOUTS),
                   help="frozen features of modes linear / mlp: z or stages (pooled outputs of every encoder "
                        "stage; cached under OUT/eval/<mode>_stages/, finetune unaffected)")
    p.add_argument("--label-subjects", default=None, help="label regimes, e.g. all,1,3,5 (the default)")
    p.add_argument("--finetune-label-subjects", default=None,
                   help="label regimes of the finetune mode if different (it costs ~100x a linear probe)")
    p.add_argument("--draws", type=int_in(1, 1000), default=None,
                   help="label-subject draws per fold in the low-label regimes")
    p.add_argument("--finetune-draws", type=int_in(1, 1000), default=None,
                   help="draws of the finetune mode if different")
    p.add_argument("--folds", type=int_in(2, 1000), default=None)
    p.add_argument("--threads", type=THREADS, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="CI size: 2 seeds, 1 epoch, 512 windows, 3 folds")
    p.add_argument("--ttq-epochs", default=None, help="epochs probed for time to quality, e.g. 2,4,6,8,10,12 "
                                                      "(default: every epoch)")
    p.add_argument("--skip-time-to-quality", action="store_true", help="no per-epoch probe curves")
    p.add_argument("--variant", action="append", default=None,
                   help="an extra pretrained row: NAME='--method flowfm --t-sampling uniform' (repeatable)")
    p.add_argument("--split", default=None, choices=["design", "report"],
                   help="evaluate on one part of the fixed design / report subject split (every third subject in "
                        "sorted order is a report subject; docs/design.md §5); design runs pretrain on the design "
                        "subjects only")
    p.add_argument("--inductive", action="store_true",
                   help="pretraining never sees an evaluated subject: with --split report, one model per seed "
                        "pretrained on the design subjects; without --split, one model per fold and seed without that fold's "
                        "test subjects (costs --folds times the pretraining); use a fresh --out")
    p.add_argument("--evaluate-only", action="store_true",
                   help="never pretrain (error if a model is missing); continues OUT like --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the comparison in OUT (reuse its finished models and reports, resume interrupted "
                        "runs; the settings that define them must be the same)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the comparison in OUT (only the files a comparison writes are removed)")
    p.set_defaults(func=run)

