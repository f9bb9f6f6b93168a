"""Resampling to the model rate (30 Hz) and cutting continuous recordings into labelled windows.

Signals are resampled with an anti-aliased polyphase FIR filter (:func:`scipy.signal.resample_poly`): the rate
ratio ``fs_out / fs_in`` is approximated by ``up / down`` (``Fraction(...).limit_denominator(1000)``), the signal
is upsampled by ``up``, low-pass filtered below the *lower* of the two Nyquist rates (Kaiser window), and
downsampled by ``down``. Unlike linear interpolation, content above the new Nyquist rate is removed instead
of folding back (aliasing) into the band. Output sample ``j`` sits at time ``j / fs_out`` (no delay).

Labels are resampled by nearest-sample mapping (:func:`resample_labels`), and :func:`make_windows` cuts
``(T, C)`` signals into ``(N, C, L)`` windows, labelling each by its majority label when that label covers at
least ``min_label_fraction`` of the window (docs/design.md §2: 10 s windows, 5 s hop, 80 %).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Collection, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .windows import UNLABELLED, UNLABELLED_STR

__all__ = ["rate_ratio", "resample_to", "resample_labels", "make_windows", "window_params"]

MAX_DENOMINATOR = 1000


def rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """``(up, down)`` with ``up / down ~= fs_out / fs_in`` (denominator <= 1000), in lowest terms."""
    fs_in, fs_out = float(fs_in), float(fs_out)
    if not (math.isfinite(fs_in) and fs_in > 0 and math.isfinite(fs_out) and fs_out > 0):
        raise ValueError(f"sampling rates must be positive and finite, got fs_in={fs_in}, fs_out={fs_out}")
    frac = Fraction(fs_out / fs_in).limit_denominator(MAX_DENOMINATOR)
    if frac == 0:
        raise ValueError(f"fs_out / fs_in = {fs_out / fs_in:g} is too small to approximate with a denominator "
                         f"<= {MAX_DENOMINATOR}")
    return frac.numerator, frac.denominator


def resample_to(signal: Any, fs_in: float, fs_out: float = 30.0, axis: int = 0, *,
                padtype: str = "line") -> np.ndarray:
    """Anti-aliased polyphase resampling of ``signal`` from ``fs_in`` to ``fs_out`` Hz along ``axis``.

    Args:
        signal: array, e.g. ``(T, C)`` with time on ``axis=0``.
        fs_in, fs_out: input and output rates in Hz (ratio approximated by ``up/down``, see :func:`rate_ratio`).
        padtype: how the edges are extended for the filter (passed to ``resample_poly``). The default
            ``"line"`` removes the straight line through the first and last samples before filtering and
            adds it back, so a constant offset such as gravity (1 g) causes no ringing at the recording edges.

    Returns:
        The resampled array, ``T_out = ceil(T * up / down)`` samples along ``axis``; float32 for float32
        input, else float64. NaNs spread over the filter length (about ``10 * max(up, down) / up`` output
        samples): remove them first.
    """
    x = np.asarray(signal)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"signal must be real numbers, got dtype {x.dtype}")
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    up, down = rate_ratio(fs_in, fs_out)
    if up == down or x.shape[axis] == 0:
        return x.astype(out_dtype, copy=True)
    from scipy.signal import resample_poly  # lazy: scipy.signal takes about 1 s to import

    y = resample_poly(x.astype(np.float64, copy=False), up, down, axis=axis, padtype=padtype)
    return y.astype(out_dtype, copy=False)


def resample_labels(labels: Any, fs_in: float, fs_out: float, n_out: int) -> np.ndarray:
    """Resample per-sample labels by nearest-sample mapping.

    Output sample ``j`` (time ``j / fs_out``) takes the input label at index ``round(j * fs_in / fs_out)``
    (half up, clipped to the last input sample), with the same rational ratio as :func:`resample_to`, so the
    labels stay aligned with the resampled signal.

    Args:
        labels: ``(T,)`` labels (any dtype).
        n_out: number of output samples (use ``len`` of the resampled signal).

    Returns:
        ``(n_out,)`` labels of the input dtype.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must have shape (T,), got {tuple(lab.shape)}")
    if n_out < 0:
        raise ValueError(f"n_out must be >= 0, got {n_out}")
    if lab.shape[0] == 0:
        if n_out:
            raise ValueError("cannot resample an empty label sequence to a non-empty one")
        return lab.copy()
    up, down = rate_ratio(fs_in, fs_out)
    j = np.arange(n_out, dtype=np.int64)
    idx = (2 * j * down + up) // (2 * up)
    return lab[np.minimum(idx, lab.shape[0] - 1)]


def window_params(fs: float, window_s: float = 10.0, hop_s: float = 5.0) -> tuple[int, int]:
    """``(L, hop)`` in samples: ``round(window_s * fs)``, ``round(hop_s * fs)`` (both >= 1)."""
    length, hop = int(round(window_s * fs)), int(round(hop_s * fs))
    if length < 1 or hop < 1:
        raise ValueError(f"window_s={window_s} s and hop_s={hop_s} s at fs={fs} Hz give L={length}, hop={hop} "
                         "samples; both must be >= 1")
    return length, hop


def _as_label_array(labels: Any, t: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != t:
        raise ValueError(f"labels must have shape ({t},) to match the signal, got {tuple(lab.shape)}")
    if lab.dtype.kind in "iu":
        return lab.astype(np.int64, copy=False)
    if lab.dtype.kind in "USO":
        return lab.astype(str)
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or not np.all(lab == np.round(lab)):
            raise ValueError("float labels must be finite whole numbers (use int or str labels)")
        return lab.astype(np.int64)
    raise TypeError(f"labels must be int or str, got dtype {lab.dtype}")


def make_windows(signal: Any, fs: float, labels: Any = None, window_s: float = 10.0, hop_s: float = 5.0,
                 min_label_fraction: float = 0.8, valid_labels: Optional[Collection] = None
                 ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Cut a continuous ``(T, C)`` recording into overlapping windows (vectorised, no per-sample loops).

    Window ``n`` covers samples ``[n * hop, n * hop + L)`` with ``L = round(window_s * fs)`` and
    ``hop = round(hop_s * fs)``; there are ``N = (T - L) // hop + 1`` windows (0 when ``T < L``; the tail
    that does not fill a window is dropped).

    A window's label is its majority label ``m`` if ``count(m) >= ceil(min_label_fraction * L)`` and (when
    ``valid_labels`` is given) ``m in valid_labels``; otherwise :data:`UNLABELLED` (-1) for int labels, or
    ``""`` for str labels. Labels that are not valid still count in the window (so a window that is 30 %
    transition is unlabelled under the 80 % rule).

    Args:
        signal: ``(T, C)`` samples, channels-last (values are not checked for NaN here).
        fs: sampling rate in Hz.
        labels: optional ``(T,)`` per-sample labels (int or str).

    Returns:
        ``(x, y)``: ``x`` of shape ``(N, C, L)`` float32 (channels-first, contiguous) and ``y`` of shape
        ``(N,)`` (int64 or str) or None when ``labels`` is None.
    """
    sig = np.asarray(signal)
    if sig.ndim != 2:
        raise ValueError(f"signal must have shape (T, C), got shape {tuple(sig.shape)}")
    if not 0.0 < min_label_fraction <= 1.0:
        raise ValueError(f"min_label_fraction must be in (0, 1], got {min_label_fraction}")
    t, c = sig.shape
    length, hop = window_params(fs, window_s, hop_s)
    n = 0 if t < length else (t - length) // hop + 1
    if n == 0:
        x = np.zeros((0, c, length), dtype=np.float32)
    else:
        # (T - L + 1, C, L) view; every hop-th row is a window
        x = np.ascontiguousarray(sliding_window_view(sig, length, axis=0)[::hop][:n], dtype=np.float32)
    if labels is None:
        return x, None

    lab = _as_label_array(labels, t)
    is_str = lab.dtype.kind == "U"
    unlabelled = UNLABELLED_STR if is_str else UNLABELLED
    y = np.full(n, unlabelled, dtype=lab.dtype if is_str else np.int64)
    if n == 0:
        return x, y
    values, codes = np.unique(lab, return_inverse=True)
    starts = np.arange(n, dtype=np.int64) * hop
    counts = np.empty((n, len(values)), dtype=np.int64)
    for k in range(len(values)):  # one cumulative count per distinct label: O(T) memory, no per-sample loop
        cum = np.concatenate(([0], np.cumsum(codes == k, dtype=np.int64)))
        counts[:, k] = cum[starts + length] - cum[starts]
    best = counts.argmax(axis=1)
    need = math.ceil(min_label_fraction * length - 1e-9)
    ok = counts[np.arange(n), best] >= need
    if valid_labels is not None:
        valid = np.asarray(list(valid_labels), dtype=values.dtype)
        ok &= np.isin(values, valid)[best]
    y[ok] = values[best[ok]]
    return x, y
