"""Training time to quality: probe quality of the encoder at each epoch checkpoint of a pretraining run, against
the wall time spent to get there, and the time a method needs to reach a baseline's final quality (docs/design.md §7).

A run folder is what :func:`flowfm.training.pretrain` writes with ``keep_checkpoints=0``: ``checkpoints/epoch_XXXX/``
for every epoch and ``history.json`` (per-epoch ``seconds``). The curve of a run is

    [(epoch e, T_e = sum_{i <= e} seconds_i, quality_e)],  quality_e = linear-probe macro-F1 of E after epoch e,

and the time to reach a target q* is ``T_e`` of the first checkpoint e with ``quality_e >= q*`` (None when never
reached). Comparing methods: q* is the baseline's final quality (same seed), and the report gives each method's
time and epochs to q*; with per-epoch costs measured in the same conditions the epoch count is the contention-free
number, the seconds are what a user waits.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from flowfm.evaluation.features import encode_windows
from flowfm.evaluation.probe import linear_probe


def epoch_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """[(epoch, folder)] of the complete epoch checkpoints of a run, in epoch order."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"{ckpt_dir} does not exist: pass a run folder written by `flowfm pretrain`")
    found = []
    for folder in sorted(ckpt_dir.glob("epoch_*")):
        if folder.is_dir() and (folder / "config.json").is_file() and (folder / "train_state.json").is_file():
            found.append((int(folder.name.split("_")[1]), folder))
    if not found:
        raise FileNotFoundError(f"no complete epoch checkpoint under {ckpt_dir}")
    return found


def run_history(run_dir) -> list[dict]:
    """The per-epoch records of ``history.json`` (epoch, loss, seconds, ...)."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished")
    return json.loads(path.read_text())


def quality_curve(run_dir, x, y, pid, *, epochs: Optional[Sequence[int]] = None, label_subjects: Optional[int] = None,
                  draws: int = 1, n_folds: int = 5, seed: int = 0) -> list[dict]:
    """Linear-probe quality after each (selected) epoch of a run.

    x (N, C, L) labelled windows in g, y (N,), pid (N,). Returns one record per checkpoint: ``epoch``,
    ``seconds`` (cumulative training wall time up to that epoch, from history.json), ``macro_f1`` and ``kappa``
    (mean over draws) and ``macro_f1_sd``. The probe is :func:`linear_probe` with the given regime and seed, so two
    runs evaluated with the same arguments see the same folds and label-subject draws.
    """
    from flowfm.checkpoint import load_model

    seconds = np.cumsum([h["seconds"] for h in run_history(run_dir)])
    wanted = None if epochs is None else set(epochs)
    curve = []
    for epoch, folder in epoch_checkpoints(run_dir):
        if wanted is not None and epoch not in wanted:
            continue
        if epoch > len(seconds):
            raise ValueError(f"{folder} is epoch {epoch} but history.json has only {len(seconds)} epochs")
        feats = encode_windows(load_model(folder), x)
        probe = linear_probe(feats, y, pid, n_folds=n_folds, label_subjects=label_subjects, draws=draws, seed=seed)
        curve.append({"epoch": epoch, "seconds": float(seconds[epoch - 1]),
                      "macro_f1": probe["macro_f1"]["mean"], "macro_f1_sd": probe["macro_f1"]["sd"],
                      "kappa": probe["kappa"]["mean"]})
    return curve


def time_to_reach(curve: Sequence[dict], target: float, key: str = "macro_f1") -> Optional[dict]:
    """The first record of ``curve`` whose ``key`` is >= ``target`` ({epoch, seconds, value}), or None."""
    for record in curve:
        if record[key] >= target:
            return {"epoch": record["epoch"], "seconds": record["seconds"], "value": record[key]}
    return None


def compare_time_to_quality(method_curve: Sequence[dict], baseline_curve: Sequence[dict],
                            key: str = "macro_f1") -> dict:
    """Time for the method and for the baseline to reach the baseline's FINAL quality (same seed and probe).

    ``time_ratio`` = method seconds / baseline seconds (<= 0.5 meets the target of docs/design.md §7); None when the
    method never reaches the target within its run.
    """
    if not method_curve or not baseline_curve:
        raise ValueError("both curves need at least one checkpoint")
    target = baseline_curve[-1][key]
    method_hit, base_hit = time_to_reach(method_curve, target, key), time_to_reach(baseline_curve, target, key)
    ratio = method_hit["seconds"] / base_hit["seconds"] if method_hit is not None else None
    epoch_ratio = method_hit["epoch"] / base_hit["epoch"] if method_hit is not None else None
    return {"target": target, "method": method_hit, "baseline": base_hit, "time_ratio": ratio,
            "epoch_ratio": epoch_ratio}
