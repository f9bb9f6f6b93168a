"""Generation quality (docs/design.md §5): feature Frechet distance, discriminative score, TSTR/TRTR macro-F1 and
reconstruction correlation of generated accelerometer windows.

All window inputs are (N, C, L) arrays in g; features are the fixed hand-crafted set of
``flowfm.evaluation.generation_features.window_features`` (71 columns at C = 3). Report these as a function of NFE
by calling ``generation_report`` once per NFE on samples drawn with the same conditioning windows and seed.

- ``frechet_distance(fa, fb)``: both feature sets are standardised with the *real* (first) set's per-feature mean
  and SD (SD floored: a feature constant in the real set keeps scale 1), so no feature dominates by its units; then
  ``FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` with ``scipy.linalg.sqrtm`` (real part).
- ``discriminative_score``: ``|0.5 - accuracy|`` of a real-vs-synthetic classifier on held-out windows, k-fold.
- ``tstr_macro_f1`` / ``trtr_macro_f1``: train on synthetic (resp. real training) windows, test on real windows.
- ``reconstruction_correlation``: Pearson correlation of x with the sample conditioned on E(x).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from scipy.linalg import sqrtm
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from flowfm.evaluation.generation_features import _check_windows, window_features

_SD_FLOOR = 1e-8  # a feature whose real-set SD is below this is standardised with scale 1 (it is ~constant)


# ----------------------------------------------------------------------------------------------- Frechet distance
def _gaussian(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if feats.shape[0] < 2:
        raise ValueError(f"a Gaussian fit needs at least 2 windows, got {feats.shape[0]}")
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to features ``feats_a`` (N_a, F; the REAL set) and ``feats_b``.

    Both sets are first standardised by the real set's per-feature mean and SD (ddof = 0; an SD below 1e-8 is
    replaced by 1). Then, with sample means ``mu`` and covariances ``S`` (ddof = 1),

        FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2}),

    the matrix square root from ``scipy.linalg.sqrtm``, keeping its real part. When the product is singular
    (the square root is not finite, has a noticeable imaginary part, or does not square back to ``S_a S_b``) both
    covariances get ``eps * I`` added in every term (not only inside the root), so identical sets still give 0;
    with unit-variance features this changes the distance by O(eps). The hand-crafted covariances are exactly
    singular (the band fractions of a signal sum to 1), but ``sqrtm`` of their product is accurate in practice
    (relative residual ~1e-15 on 200 windows), so the offset is a fallback, not the usual path. Identical sets give
    |FD| ~ 1e-7 against tr(S) = F = 71. The result is not clipped at 0.
    """
    fa, fb = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"features must be (N, F) with equal F, got {fa.shape} and {fb.shape}")
    if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
        raise ValueError("features contain NaN or inf")
    loc, scale = fa.mean(axis=0), fa.std(axis=0)
    scale = np.where(scale > _SD_FLOOR, scale, 1.0)
    mu_a, cov_a = _gaussian((fa - loc) / scale)
    mu_b, cov_b = _gaussian((fb - loc) / scale)

    def trace_sqrt(ca, cb) -> Optional[float]:
        prod = ca @ cb
        root = sqrtm(prod)
        if not np.isfinite(root).all():
            return None
        norm = max(np.linalg.norm(prod), 1e-300)
        if np.abs(root.imag).max(initial=0.0) > 1e-6 * np.sqrt(norm) or \
                np.linalg.norm(root @ root - prod) > 1e-8 * norm:
            return None
        return float(np.trace(root.real))

    tr = trace_sqrt(cov_a, cov_b)
    if tr is None:
        eye = eps * np.eye(len(cov_a))
        cov_a, cov_b = cov_a + eye, cov_b + eye
        tr = float(np.trace(sqrtm(cov_a @ cov_b).real))
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr)


def feature_frechet_distance(real_x, fake_x, fs: float = 30.0, eps: float = 1e-6) -> float:
    """``frechet_distance(window_features(real_x), window_features(fake_x))`` (real set standardises)."""
    return frechet_distance(window_features(real_x, fs), window_features(fake_x, fs), eps=eps)


# ------------------------------------------------------------------------------------------ discriminative score
def _classifier(kind: str, seed: int):
    if kind == "hgb":
        clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, early_stopping=False,
                                             random_state=seed)
    elif kind == "logistic":
        clf = LogisticRegression(C=1.0, max_iter=2000)
    else:
        raise ValueError(f"classifier must be 'hgb' or 'logistic', got {kind!r}")
    return make_pipeline(StandardScaler(), clf)


def _discriminate(fr: np.ndarray, ff: np.ndarray, seed: int, n_splits: int, classifier: str) -> dict:
    n = min(len(fr), len(ff))
    if n < n_splits:
        raise ValueError(f"need at least n_splits={n_splits} windows per set, got {len(fr)} and {len(ff)}")
    rng = np.random.default_rng(seed)
    if len(fr) > n:
        fr = fr[np.sort(rng.choice(len(fr), n, replace=False))]
    if len(ff) > n:
        ff = ff[np.sort(rng.choice(len(ff), n, replace=False))]
    correct = 0
    # One thread: at a few hundred windows OpenMP threads only add overhead, and on a shared CPU they spin-wait
    # (a 0.3 s HistGradientBoosting fit took 13 s with 2 threads on 2 busy cores).
    with threadpool_limits(limits=1):
        for train, test in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n)):
            clf = _classifier(classifier, seed)
            clf.fit(np.concatenate([fr[train], ff[train]]),
                    np.concatenate([np.ones(len(train), int), np.zeros(len(train), int)]))
            correct += int((clf.predict(fr[test]) == 1).sum() + (clf.predict(ff[test]) == 0).sum())
    accuracy = correct / (2 * n)
    return {"score": abs(0.5 - accuracy), "accuracy": accuracy, "n_per_class": n, "n_splits": n_splits,
            "classifier": classifier}


def discriminative_score(real_x, fake_x, seed: int = 0, n_splits: int = 5, classifier: str = "hgb",
                         fs: float = 30.0, return_details: bool = False):
    """``|0.5 - held-out accuracy|`` of a real-vs-synthetic classifier on standardised ``window_features``.

    Classes are balanced by subsampling the larger set (seeded) to n = min(N_real, N_fake). The accuracy is pooled
    over a k-fold split (``n_splits``; every window is predicted once) made over the *pair index* i in [0, n): real
    window i and synthetic window i always fall on the same side. Each fold is therefore exactly balanced, and a
    synthetic window that reproduces its real counterpart (a reconstruction conditioned on E(x_i), or identical
    sets) cannot be scored as "detected" merely because the classifier memorised its real twin in training.
    ``classifier``: ``"hgb"`` (HistGradientBoosting, 100 iterations, default) or ``"logistic"`` (linear).
    0 means indistinguishable, 0.5 perfectly separable. ``return_details`` gives a dict with the accuracy too.
    """
    out = _discriminate(window_features(real_x, fs), window_features(fake_x, fs), seed, n_splits, classifier)
    return out if return_details else out["score"]


# --------------------------------------------------------------------------------------------------- TSTR / TRTR
def _train_test_macro_f1(f_train, y_train, f_test, y_test, C: float, max_iter: int) -> float:
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(f_train) != len(y_train) or len(f_test) != len(y_test):
        raise ValueError("windows and labels differ in length")
    labels = np.unique(y_test)
    if len(np.unique(y_train)) < 2:
        y_pred = np.full_like(y_test, y_train[0])
    else:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced"))
        with threadpool_limits(limits=1):
            clf.fit(f_train, y_train)
            y_pred = clf.predict(f_test)
    return float(f1_score(y_test, y_pred, labels=labels, average="macro", zero_division=0))


def tstr_macro_f1(synth_x, synth_y, real_test_x, real_test_y, fs: float = 30.0, C: float = 1.0,
                  max_iter: int = 1000, featurizer: Optional[Callable] = None) -> float:
    """Train on synthetic, test on real: macro-F1 over the real test labels.

    ``featurizer(x) -> (N, D)`` (default ``window_features``) -> StandardScaler -> LogisticRegression (C=1,
    class_weight="balanced", lbfgs), the same classifier as the linear probe. ``synth_y`` are the labels of the
    real training windows the samples were conditioned on. A single-class training set predicts that class.
    """
    feat = featurizer or (lambda x: window_features(x, fs))
    return _train_test_macro_f1(feat(synth_x), synth_y, feat(real_test_x), real_test_y, C, max_iter)


def trtr_macro_f1(real_train_x, real_train_y, real_test_x, real_test_y, fs: float = 30.0, C: float = 1.0,
                  max_iter: int = 1000, featurizer: Optional[Callable] = None) -> float:
    """Train on real, test on real: the reference row for ``tstr_macro_f1`` (identical classifier and features)."""
    return tstr_macro_f1(real_train_x, real_train_y, real_test_x, real_test_y, fs, C, max_iter, featurizer)


# ------------------------------------------------------------------------------------ reconstruction correlation
def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; 0 where either side has zero variance."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    ok = den > 0
    return np.where(ok, (a * b).sum(axis=-1) / np.where(ok, den, 1.0), 0.0)


def reconstruction_correlation(x_ref, x_gen) -> dict:
    """Pearson correlation of each reference window with the sample conditioned on its own E(x_ref).

    ``x_ref``, ``x_gen``: (N, C, L), window i of ``x_gen`` generated from E(x_ref[i]). Returns
    ``flat`` / ``flat_sd``: mean / SD over windows of the correlation of the flattened (C*L) windows (this includes
    each axis's offset, i.e. gravity orientation, so it is higher than the per-axis values); ``per_axis``: list of
    C means over windows of the per-axis correlation (each axis's own mean removed); ``per_axis_mean``: their mean.
    A window (or axis) with zero variance on either side contributes 0.
    """
    ref, gen = _check_windows(x_ref, "x_ref"), _check_windows(x_gen, "x_gen")
    if ref.shape != gen.shape:
        raise ValueError(f"x_ref {ref.shape} and x_gen {gen.shape} must have the same shape")
    n = len(ref)
    flat = _rowwise_pearson(ref.reshape(n, -1), gen.reshape(n, -1))
    per_axis = _rowwise_pearson(ref, gen).mean(axis=0)
    return {"flat": float(flat.mean()), "flat_sd": float(flat.std()), "per_axis": per_axis.tolist(),
            "per_axis_mean": float(per_axis.mean()), "n": n}


# ------------------------------------------------------------------------------------------------------- report
def generation_report(real_x, fake_x, *, real_y=None, fake_y=None, test_x=None, test_y=None, paired: bool = False,
                      fs: float = 30.0, seed: int = 0, n_splits: int = 5, classifier: str = "hgb",
                      eps: float = 1e-6) -> dict:
    """All generation-quality metrics the inputs allow, features computed once per set.

    - always: ``frechet`` (real_x standardises), ``discriminative_score`` / ``discriminative_accuracy``;
    - ``fake_y``, ``test_x``, ``test_y`` given: ``tstr_macro_f1`` (train on fake_x/fake_y, test on test_x/test_y);
      with ``real_y`` too: ``trtr_macro_f1`` (train on real_x/real_y);
    - ``paired`` (fake_x[i] generated from E(real_x[i])): ``reconstruction`` (``reconstruction_correlation``).
    """
    real_x, fake_x = _check_windows(real_x, "real_x"), _check_windows(fake_x, "fake_x")
    fr, ff = window_features(real_x, fs), window_features(fake_x, fs)
    disc = _discriminate(fr, ff, seed, n_splits, classifier)
    report = {"n_real": len(real_x), "n_fake": len(fake_x), "n_features": fr.shape[1],
              "frechet": frechet_distance(fr, ff, eps=eps), "discriminative_score": disc["score"],
              "discriminative_accuracy": disc["accuracy"], "classifier": classifier}
    if fake_y is not None and test_x is not None and test_y is not None:
        ft = window_features(test_x, fs)
        report["tstr_macro_f1"] = _train_test_macro_f1(ff, fake_y, ft, test_y, 1.0, 1000)
        if real_y is not None:
            report["trtr_macro_f1"] = _train_test_macro_f1(fr, real_y, ft, test_y, 1.0, 1000)
    if paired:
        report["reconstruction"] = reconstruction_correlation(real_x, fake_x)
    return report
