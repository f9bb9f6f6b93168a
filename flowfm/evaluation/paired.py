"""Paired differences between two evaluation reports (method minus baseline, same seeds, folds and draws)."""
from __future__ import annotations

import numpy as np

_PROTOCOL_KEYS = ("data", "folds", "loso", "label_subjects")


def paired_differences(report: dict, baseline: dict, metric: str = "macro_f1") -> dict:
    """Differences ``report - baseline`` of ``metric`` per (seed, draw) present in both reports.

    Both reports come from :func:`~flowfm.evaluation.protocol.evaluate_encoder` (or ``flowfm evaluate --out``) on
    the same protocol (data, folds, LOSO, label subjects); the same seed and draw index means the same folds and
    labelled subjects, so each pair differs only by the model.

    Verdict rule: with n >= 2 pairs, **tie** when |mean| <= SD (ddof=1) of the paired differences, else **win**
    (mean > 0) or **loss** (mean < 0). With a single pair the spread is unknown and the verdict is ``"n/a"``.

    Returns {"metric", "mean", "sd", "values" (per pair, ordered by seed then draw), "pairs" ([seed, draw]),
    "n", "n_positive", "verdict"}.
    """
    for key in _PROTOCOL_KEYS:
        if report.get(key) != baseline.get(key):
            raise ValueError(f"reports differ in {key!r} ({report.get(key)!r} vs {baseline.get(key)!r}): "
                             "paired differences need the same protocol")

    def by_pair(r):
        return {(s["seed"], d["draw"]): d[metric] for s in r["per_seed"] for d in s["draws"]}

    a, b = by_pair(report), by_pair(baseline)
    pairs = sorted(set(a) & set(b))
    if not pairs:
        raise ValueError("the reports share no (seed, draw) pair: evaluate both with the same seeds")
    values = np.array([a[p] - b[p] for p in pairs], dtype=float)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    if len(values) < 2:
        verdict = "n/a"
    elif abs(mean) <= sd:
        verdict = "tie"
    else:
        verdict = "win" if mean > 0 else "loss"
    return {"metric": metric, "mean": mean, "sd": sd, "values": values.tolist(), "pairs": [list(p) for p in pairs],
            "n": int(len(values)), "n_positive": int((values > 0).sum()), "verdict": verdict}
