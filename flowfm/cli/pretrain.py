"""``flowfm pretrain``: the options and the run live in :mod:`flowfm.training.pretrain_run`."""
from __future__ import annotations


def run(args) -> int:
    from flowfm.training.pretrain_run import pretrain_run

    pretrain_run(args)
    return 0


def add_parser(sub) -> None:
    from flowfm.training.pretrain_run import add_pretrain_arguments

    p = sub.add_parser("pretrain", help="pretrain a model on unlabelled windows")
    add_pretrain_arguments(p)
    p.set_defaults(func=run)
