"""Linear probe: frozen features -> standardise -> logistic regression, evaluated subject-wise (docs/design.md §5).

For each fold (train subjects / test subjects disjoint) and each draw of ``label_subjects`` training subjects
(low-label regime), the classifier is fit on the chosen training windows only and predicts the fold's test windows.
Predictions of all folds are pooled per draw into macro-F1 and kappa (every labelled window is predicted once
per draw); the draws' spread is reported.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from flowfm.evaluation.metrics import classification_metrics, summarize
from flowfm.evaluation.splits import label_subject_draw, subject_folds


def linear_probe(features: np.ndarray, y: np.ndarray, pid: np.ndarray, n_folds: int = 5, loso: bool = False,
                 label_subjects: Optional[int] = None, draws: int = 1, seed: int = 0, C: float = 1.0,
                 max_iter: int = 1000, keep_predictions: bool = False) -> dict:
    """features (N, D), labels y (N,), subject ids pid (N,) -> {"per_draw": [...metrics], "macro_f1": summary,
    "kappa": summary, ...}. ``features`` may also be a list of one (N, D) array per fold (the features of per-fold
    encoders, inductive evaluation): fold f is fit and tested on ``features[f]``."""
    per_fold = isinstance(features, list)
    y, pid = np.asarray(y), np.asarray(pid)
    feature_sets = [np.asarray(f) for f in features] if per_fold else [np.asarray(features)]
    if not all(len(f) == len(y) == len(pid) for f in feature_sets):
        raise ValueError(f"features ({[len(f) for f in feature_sets]}), y ({len(y)}) and pid ({len(pid)}) differ "
                         "in length")
    folds = subject_folds(pid, n_folds, loso)
    if per_fold and len(feature_sets) != len(folds):
        raise ValueError(f"{len(feature_sets)} per-fold feature sets for {len(folds)} folds")
    labels = np.unique(y)
    draws = draws if label_subjects is not None else 1
    per_draw = []
    for draw in range(draws):
        y_pred = np.empty_like(y)
        for fold, (train_idx, test_idx) in enumerate(folds):
            features = feature_sets[fold if per_fold else 0]
            chosen = label_subject_draw(pid, train_idx, label_subjects, seed=seed * 100_003 + fold * 1_009 + draw)
            assert not np.isin(pid[chosen], pid[test_idx]).any(), "test subject leaked into training"
            if len(np.unique(y[chosen])) < 2:
                y_pred[test_idx] = y[chosen][0]
                continue
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter,
                                                                     class_weight="balanced"))
            clf.fit(features[chosen], y[chosen])
            y_pred[test_idx] = clf.predict(features[test_idx])
        per_draw.append(classification_metrics(y, y_pred, pid, labels))
        if keep_predictions:
            per_draw[-1]["y_pred"] = y_pred.tolist()
    return {"per_draw": per_draw, "macro_f1": summarize([d["macro_f1"] for d in per_draw]),
            "kappa": summarize([d["kappa"] for d in per_draw]), "folds": len(folds),
            "label_subjects": label_subjects, "draws": draws}
