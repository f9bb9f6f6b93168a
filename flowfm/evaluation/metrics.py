"""Classification metrics: macro-F1 and Cohen's kappa, pooled and per subject (mean +- SD)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, pid: np.ndarray, labels=None) -> dict:
    """Pooled macro-F1/kappa over all windows, per-class precision / recall / F1 / support, the confusion matrix
    (rows: true label, columns: predicted, in the order of ``labels``), and the mean/SD over subjects of per-subject
    macro-F1/kappa."""
    labels = np.unique(y_true) if labels is None else labels
    per_f1, per_kappa = [], []
    for subject in np.unique(pid):
        mask = pid == subject
        present = np.unique(y_true[mask])
        per_f1.append(f1_score(y_true[mask], y_pred[mask], labels=present, average="macro", zero_division=0))
        kappa = cohen_kappa_score(y_true[mask], y_pred[mask]) if len(np.unique(
            np.concatenate([y_true[mask], y_pred[mask]]))) > 1 else 1.0
        per_kappa.append(0.0 if np.isnan(kappa) else kappa)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                     zero_division=0)
    per_class = {str(k): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                 for k, p, r, f, n in zip(labels, precision, recall, f1, support)}
    return {
        "per_class": per_class,
        "confusion": {"labels": [str(k) for k in labels],
                      "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "kappa": float(cohen_kappa_score(y_true, y_pred)),
        "subject_f1_mean": float(np.mean(per_f1)), "subject_f1_sd": float(np.std(per_f1)),
        "subject_kappa_mean": float(np.mean(per_kappa)), "subject_kappa_sd": float(np.std(per_kappa)),
    }


def summarize(values) -> dict:
    """mean, SD (ddof=1 when n > 1), min, max and n of a list of numbers."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}
