"""``flowfm demo``."""
from __future__ import annotations

from flowfm.argument_types import EPOCHS, SEED
from flowfm.cli.common import add_backend, add_overwrite


#: what the demo writes into --out (and --overwrite replaces)
DEMO_OUTPUTS = ("pretrain", "summary.json", "real_vs_generated.png")


def run(args) -> int:
    from flowfm.demo import run_demo

    from flowfm.run_folder import owned

    with owned(args.out, overwrite=args.overwrite, what="demo run", writes=DEMO_OUTPUTS, resumable=False):
        run_demo(args.out, quick=args.quick, epochs=args.epochs, seed=args.seed, backend=args.backend,
                 progress=not args.no_progress)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="end-to-end run on HAPT: pretrain, probe vs random init, sample, plot")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a short run (CI): 512 windows, 1 epoch")
    p.add_argument("--epochs", type=EPOCHS, default=None)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--no-progress", action="store_true")
    add_overwrite(p, "the demo run in --out")
    add_backend(p)
    p.set_defaults(func=run)

