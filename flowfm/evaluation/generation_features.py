"""Fixed hand-crafted feature set of accelerometer windows, for generation-quality metrics (docs/design.md §5).

``window_features(x)`` maps windows ``x`` (N, C, L) in g to ``(N, F)`` float64 features. The set is fixed and
documented so that Frechet distances and classifier scores are comparable across models, NFE and runs; do not
change it without renaming the metric.

Signals. Each of the C axes (x, y, z for C = 3) and the magnitude ``|a|_t = sqrt(sum_c a_{c,t}^2)`` is one signal
``s`` of length L; ``s~ = s - mean(s)`` is its mean-removed version. Per signal (17 features, in this order):

====================  =====================================================================================
name                  formula
====================  =====================================================================================
``mean``              ``mu = (1/L) sum_t s_t``
``std``               ``sigma = sqrt((1/L) sum_t s~_t^2)`` (population SD, ddof = 0)
``min`` / ``max``     ``min_t s_t`` / ``max_t s_t``
``p10/p50/p90``       10th / 50th / 90th percentile of ``s`` (numpy linear interpolation)
``skew``              ``m3 / m2^1.5`` with ``m_k = (1/L) sum_t s~_t^k`` (biased sample skewness)
``kurt``              ``m4 / m2^2 - 3`` (Fisher / excess kurtosis, biased)
``band_<lo>_<hi>Hz``  ``sum_{lo <= f < hi} P(f) / sum_f P(f)`` for the bands 0-1, 1-3, 3-5, 5-8, 8-15 Hz (the last
                      one includes 15 Hz, the Nyquist frequency at 30 Hz), where ``P`` is the one-sided periodogram
                      of ``s~`` with a Hann window (``scipy.signal.periodogram``, resolution fs / L = 0.1 Hz at
                      L = 300); fractions of the *total* power, so they sum to 1 when fs = 30 Hz
``dom_freq``          ``argmax_{f > 0} P(f)`` in Hz (the DC bin is excluded)
``acf_0.5s/acf_1s``   ``r(k) = sum_{t < L-k} s~_t s~_{t+k} / sum_t s~_t^2`` at ``k = round(0.5 fs)`` and
                      ``k = round(fs)`` samples (biased autocorrelation; lag 0 would be 1 by definition)
====================  =====================================================================================

followed by the inter-axis Pearson correlations ``corr_<a><b> = sum_t a~_t b~_t / sqrt(sum a~^2 sum b~^2)`` for every
axis pair a < b (xy, xz, yz for C = 3). With C = 3 that is 4 * 17 + 3 = 71 features, named in ``FEATURE_NAMES``
(``feature_names(C)`` for other channel counts; channels beyond 3 are called ``ch<i>``).

Zero variance. A signal with ``m2 <= 1e-12`` g^2 (SD <= 1e-6 g, e.g. a constant window) is treated as flat: its
skew, kurtosis, band fractions, dominant frequency, autocorrelations and every correlation it enters are 0. The
features of a finite window are therefore always finite.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import periodogram

BANDS_HZ = ((0.0, 1.0), (1.0, 3.0), (3.0, 5.0), (5.0, 8.0), (8.0, 15.0))
ACF_LAGS_S = (0.5, 1.0)
FLAT_VAR = 1e-12  # g^2: below this a signal counts as constant (see module docstring)
_STATS = ("mean", "std", "min", "max", "p10", "p50", "p90", "skew", "kurt")


def _fmt(v: float) -> str:
    return f"{v:g}"


def feature_names(n_channels: int = 3) -> list[str]:
    """Names of the ``window_features`` columns for ``n_channels`` axes, in column order."""
    axes = ["x", "y", "z"] if n_channels == 3 else [f"ch{i}" for i in range(n_channels)]
    per_signal = (list(_STATS) + [f"band_{_fmt(lo)}_{_fmt(hi)}Hz" for lo, hi in BANDS_HZ] + ["dom_freq"]
                  + [f"acf_{_fmt(lag)}s" for lag in ACF_LAGS_S])
    names = [f"{sig}_{feat}" for sig in axes + ["mag"] for feat in per_signal]
    names += [f"corr_{axes[i]}{axes[j]}" for i in range(n_channels) for j in range(i + 1, n_channels)]
    return names


FEATURE_NAMES = feature_names(3)


def _check_windows(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"{name} must be (N, C, L) windows, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} holds no windows")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values ({int((~np.isfinite(x)).sum())} entries)")
    return x


def window_features(x, fs: float = 30.0) -> np.ndarray:
    """x (N, C, L) windows in g -> (N, F) float64 features, columns as in ``feature_names(C)`` (module docstring)."""
    x = _check_windows(x)
    n, c, length = x.shape
    lags = [int(round(lag * fs)) for lag in ACF_LAGS_S]
    if max(lags) >= length:
        raise ValueError(f"windows of {length} samples are too short for autocorrelation lags {lags} at fs={fs}")
    sig = np.concatenate([x, np.sqrt((x ** 2).sum(axis=1, keepdims=True))], axis=1)  # (N, C+1, L)
    mean = sig.mean(axis=-1)
    cen = sig - mean[..., None]
    m2 = (cen ** 2).mean(axis=-1)
    live = m2 > FLAT_VAR
    safe_m2 = np.where(live, m2, 1.0)
    skew = np.where(live, (cen ** 3).mean(axis=-1) / safe_m2 ** 1.5, 0.0)
    kurt = np.where(live, (cen ** 4).mean(axis=-1) / safe_m2 ** 2 - 3.0, 0.0)
    p10, p50, p90 = np.percentile(sig, [10, 50, 90], axis=-1)

    freqs, psd = periodogram(cen, fs=fs, window="hann", detrend="constant", scaling="density", axis=-1)
    total = psd.sum(axis=-1)
    live_p = live & (total > 0)
    safe_total = np.where(live_p, total, 1.0)
    bands = []
    for i, (lo, hi) in enumerate(BANDS_HZ):
        in_band = (freqs >= lo) & ((freqs <= hi) if i == len(BANDS_HZ) - 1 else (freqs < hi))
        bands.append(np.where(live_p, psd[..., in_band].sum(axis=-1) / safe_total, 0.0))
    positive = freqs > 0
    dom = np.where(live_p, freqs[positive][np.argmax(psd[..., positive], axis=-1)], 0.0)
    energy = np.where(live, (cen ** 2).sum(axis=-1), 1.0)
    acf = [np.where(live, (cen[..., :-k] * cen[..., k:]).sum(axis=-1) / energy, 0.0) for k in lags]

    per_signal = np.stack([mean, np.sqrt(m2), sig.min(axis=-1), sig.max(axis=-1), p10, p50, p90, skew, kurt,
                           *bands, dom, *acf], axis=-1)  # (N, C+1, 17)
    corr = []
    for i in range(c):
        for j in range(i + 1, c):
            ok = live[:, i] & live[:, j]
            den = np.sqrt(np.where(ok, m2[:, i] * m2[:, j], 1.0))
            corr.append(np.where(ok, (cen[:, i] * cen[:, j]).mean(axis=-1) / den, 0.0))
    corr = np.stack(corr, axis=-1) if corr else np.zeros((n, 0))
    return np.concatenate([per_signal.reshape(n, -1), corr], axis=1)
