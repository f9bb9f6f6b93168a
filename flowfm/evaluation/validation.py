"""Per-fold splits of the leak-free protocol: fit / validation / test subjects, and the check that enforces it.

Rules (docs/design.md §5):

* the test subjects of a fold come from :func:`~flowfm.evaluation.splits.subject_folds`; the classifier's labelled
  subjects are the fold's training subjects, or ``k`` of them in the low-label regime
  (:func:`~flowfm.evaluation.splits.label_subject_draw`, the same draws as :func:`linear_probe`);
* validation subjects (early stopping, best-epoch selection) are carved out of those labelled subjects:
  ``max(1, round(val_fraction * n))`` of the ``n`` labelled subjects, seeded, always leaving at least one subject
  to fit on. So in the low-label regime the k labelled subjects are shared between fitting and validation
  (k = 3 -> 2 fit + 1 validation subject) and the classifier never sees more than k subjects' labels;
* with a single labelled subject (k = 1, or a 2-subject LOSO fold) no subject can be held out: there is **no
  validation set**, the head trains for the fixed ``max_epochs`` budget and the last epoch's weights are used.
  Validating on windows of the same subject would select on near-duplicate (50 % overlapping) windows, and using a
  second labelled subject would break the k-subject budget, so neither is done;
* no window of a test subject is ever used for fitting or validation, and fit and validation subjects are
  disjoint: :func:`check_split` raises :class:`LeakError` otherwise (the protocol calls it on every split).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


class LeakError(AssertionError):
    """A split would train or select a model on windows of a test subject (or validate on fit subjects)."""


@dataclass(frozen=True)
class ProtocolSplit:
    """Window indices (into the labelled dataset) of one fold and one label-subject draw."""
    fold: int
    draw: int
    fit_idx: np.ndarray    # windows the classifier's weights are trained on
    val_idx: np.ndarray    # windows used for early stopping / model selection (empty: fixed epoch budget)
    test_idx: np.ndarray   # windows predicted and scored


def carve_validation(pid: np.ndarray, labelled_idx: np.ndarray, val_fraction: float, seed) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """Split the labelled training windows ``labelled_idx`` by subject into (fit_idx, val_idx).

    ``max(1, round(val_fraction * n))`` of the ``n`` labelled subjects go to validation (at most ``n - 1``); with
    ``n == 1`` or ``val_fraction == 0`` the validation set is empty. ``seed`` is anything
    :func:`numpy.random.default_rng` accepts.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    pid = np.asarray(pid)
    subjects = np.unique(pid[labelled_idx])
    if len(subjects) < 2 or val_fraction == 0.0:
        return labelled_idx, labelled_idx[:0]
    n_val = min(len(subjects) - 1, max(1, int(round(val_fraction * len(subjects)))))
    val_subjects = np.random.default_rng(seed).choice(subjects, size=n_val, replace=False)
    in_val = np.isin(pid[labelled_idx], val_subjects)
    return labelled_idx[~in_val], labelled_idx[in_val]


def check_split(pid: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, test_idx: np.ndarray,
                where: Optional[str] = None) -> None:
    """Raise :class:`LeakError` if a test subject has a window in fit or validation, or fit and validation share
    a subject."""
    pid = np.asarray(pid)
    test = set(np.unique(pid[test_idx]).tolist())
    fit, val = set(np.unique(pid[fit_idx]).tolist()), set(np.unique(pid[val_idx]).tolist())
    where = f" ({where})" if where else ""
    if fit & test:
        raise LeakError(f"test subject(s) {sorted(fit & test)} used for training{where}")
    if val & test:
        raise LeakError(f"test subject(s) {sorted(val & test)} used for validation / model selection{where}")
    if fit & val:
        raise LeakError(f"subject(s) {sorted(fit & val)} used for both training and validation{where}")
