"""Leak-free subject-wise splits (docs/design.md §5).

Every subject is tested exactly once: GroupKFold(k) over subject ids, or leave-one-subject-out. The low-label
regime keeps, per fold, the windows of only ``k`` training subjects, drawn with a seeded generator so that every
model sees the same folds and draws.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut


def subject_folds(pid: np.ndarray, n_folds: int = 5, loso: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train_idx, test_idx)] with disjoint subject sets; ``loso`` gives one fold per subject."""
    pid = np.asarray(pid)
    subjects = np.unique(pid)
    if len(subjects) < 2:
        raise ValueError(f"subject-wise evaluation needs at least 2 subjects, found {len(subjects)}")
    if loso:
        splitter = LeaveOneGroupOut()
    else:
        if n_folds < 2 or n_folds > len(subjects):
            raise ValueError(f"n_folds={n_folds} must be in [2, number of subjects={len(subjects)}]")
        splitter = GroupKFold(n_splits=n_folds)
    dummy = np.zeros(len(pid))
    return [(train, test) for train, test in splitter.split(dummy, groups=pid)]


def label_subject_draw(pid: np.ndarray, train_idx: np.ndarray, k: Optional[int], seed: int) -> np.ndarray:
    """Indices of ``train_idx`` whose subject is among ``k`` subjects drawn with ``seed`` (all when k is None)."""
    if k is None:
        return train_idx
    subjects = np.unique(pid[train_idx])
    if not 1 <= k <= len(subjects):
        raise ValueError(f"label_subjects={k} must be in [1, {len(subjects)}] (training subjects in this fold)")
    chosen = np.random.default_rng(seed).choice(subjects, size=k, replace=False)
    return train_idx[np.isin(pid[train_idx], chosen)]
