"""Linear-probe quality of pretraining runs after selected epochs: the pretraining-length axis of a recipe,
read from the epoch checkpoints a run keeps (``compare`` keeps every one), without training again.

    python -m bench.epoch_curve --runs "runs/design_ssl/pretrain/SSL aug off lr 1e-4" --split design \\
        --epochs 3,6,9,12 --label-subjects all,1,3,5 --out bench/results/evidence/ssl_epochs_design

Each ``--runs`` folder holds ``seed_<s>/`` run folders; seed s is probed with evaluation seed s (the folds and
label-subject draws of ``compare``'s seed s). Writes OUT.json and OUT.md: macro-F1 mean ± SD over seeds per epoch
and label regime. The probe at epoch e is the encoder after e epochs of a schedule planned for the run's full
length (a truncated cosine schedule, the early-stopping view of the length axis), not a run planned for e epochs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def epoch_curve(run_root: Path, x, y, pid, epochs, regimes, draws: int, folds: int) -> dict:
    """{"seeds", "epochs", "macro_f1": {regime: {epoch: [F1 of each seed]}}} of the runs ``run_root/seed_<s>``:
    each kept epoch checkpoint encoded once, then probed in every regime with evaluation seed s."""
    from flowfm.checkpoint import load_model
    from flowfm.evaluation.features import encode_windows
    from flowfm.evaluation.probe import linear_probe
    from flowfm.evaluation.time_to_quality import epoch_checkpoints

    seeds = sorted(int(p.name.split("_")[1]) for p in run_root.glob("seed_*") if (p / "checkpoints").is_dir())
    if not seeds:
        raise FileNotFoundError(f"{run_root} holds no seed_<s>/checkpoints folder")
    keys = {regime: "all" if regime is None else f"k{regime}" for regime in regimes}
    table = {key: {str(e): [] for e in epochs} for key in keys.values()}
    for s in seeds:
        kept = dict(epoch_checkpoints(run_root / f"seed_{s}"))
        missing = [e for e in epochs if e not in kept]
        if missing:
            raise FileNotFoundError(f"{run_root / f'seed_{s}'} keeps no checkpoint of epoch(s) {missing}")
        for e in epochs:
            feats = encode_windows(load_model(kept[e]), x)
            for regime, key in keys.items():
                probe = linear_probe(feats, y, pid, n_folds=folds, label_subjects=regime,
                                     draws=1 if regime is None else draws, seed=s)
                table[key][str(e)].append(probe["macro_f1"]["mean"])
    return {"run": str(run_root), "seeds": seeds, "epochs": list(epochs), "macro_f1": table}


def markdown(result: dict) -> str:
    regimes = list(result["macro_f1"])
    lines = [f"Linear-probe macro-F1 after each epoch of `{result['run']}` (seeds {result['seeds']}; mean ± SD over "
             "seeds)", "", "| epoch | " + " | ".join(regimes) + " |", "|---" * (len(regimes) + 1) + "|"]
    for epoch in result["macro_f1"][regimes[0]]:
        cells = []
        for r in regimes:
            v = np.asarray(result["macro_f1"][r][epoch])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from flowfm.cli.common import int_list, label_regimes
    from flowfm.data import load_hapt
    from flowfm.data.atomic import atomic_write_text
    from flowfm.environment import environment
    from flowfm.evaluation.subject_split import subject_mask

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="folders of seed_<s>/ run folders (one per recipe)")
    p.add_argument("--split", default=None, choices=["design", "report"])
    p.add_argument("--epochs", default="3,6,9,12")
    p.add_argument("--label-subjects", default="all,1,3,5")
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", required=True, help="base name of OUT.json / OUT.md")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    ds = load_hapt().labelled()
    if args.split:
        ds = ds.subset(subject_mask(ds.pid, split=args.split))
    t0 = time.perf_counter()
    results = [epoch_curve(Path(r), ds.x, ds.y, ds.pid, int_list(args.epochs), label_regimes(args.label_subjects),
                           args.draws, args.folds) for r in args.runs]
    doc = {"suite": "epoch_curve", "split": args.split, "results": results, "environment": environment(),
           "seconds": time.perf_counter() - t0, "command": "python -m bench.epoch_curve " + " ".join(argv)}
    atomic_write_text(f"{args.out}.json", json.dumps(doc, indent=2, default=str))
    text = "\n".join(markdown(r) for r in results)
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
