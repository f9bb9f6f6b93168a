"""The in-memory dataset of fixed-length sensor windows, and the one validator every reader reuses.

Conventions (docs/design.md §2): a window is ``(C, L)`` float32, acceleration in g, channels-first; a dataset of N
windows is ``x: (N, C, L)``. Labels are ints or strings; the int label :data:`UNLABELLED` (-1) marks a window
without a (valid) label. For string labels the empty string ``""`` plays that role.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["UNLABELLED", "UNLABELLED_STR", "MIN_WINDOW_LENGTH", "WindowDataset", "validate_windows"]

#: Int label of a window that has no valid label (pretraining-only window).
UNLABELLED: int = -1
#: The same marker for string labels.
UNLABELLED_STR: str = ""
#: Shortest window length accepted anywhere (the U-Net downsamples; docs/design.md §3: any L >= 16 must work).
MIN_WINDOW_LENGTH: int = 16

# Finite-checks walk the array in chunks of about this many bytes, so a big memmap is never loaded at once.
_CHUNK_BYTES = 64 * 2**20


def _first_nonfinite(x: np.ndarray, name: str, chunk_bytes: int = _CHUNK_BYTES) -> Optional[str]:
    """Describe the non-finite values of ``x`` (any rank, leading axis chunked), or None if all finite."""
    n = x.shape[0]
    per_row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize)
    step = max(1, chunk_bytes // per_row)
    n_nan = n_inf = 0
    first: Optional[tuple[int, ...]] = None
    for start in range(0, n, step):
        chunk = np.asarray(x[start:start + step])
        finite = np.isfinite(chunk)
        if finite.all():
            continue
        bad = ~finite
        nan = np.isnan(chunk)
        n_nan += int(nan.sum())
        n_inf += int(bad.sum()) - int(nan.sum())
        if first is None:
            where = np.argwhere(bad)[0]
            first = (int(where[0]) + start, *(int(i) for i in where[1:]))
    if first is None:
        return None
    return (f"{name} contains {n_nan + n_inf} non-finite value(s) ({n_nan} NaN, {n_inf} inf); "
            f"the first is at index {first} of shape {tuple(x.shape)}")


def validate_windows(x: Any, name: str = "x", *, min_length: int = MIN_WINDOW_LENGTH,
                     check_finite: bool = True) -> np.ndarray:
    """Check a batch of windows and return it as float32.

    Args:
        x: array-like of shape ``(N, C, L)`` (channels-first), floating point, in g.
        name: what to call the array in error messages (e.g. ``"X.npy"``).
        min_length: smallest accepted L (default 16).
        check_finite: scan for NaN/inf (chunk-wise: a memmap is read piecewise, never loaded at once).

    Returns:
        ``x`` as float32 ``(N, C, L)``; an array that is already float32 is returned as-is (no copy, so a
        read-only memmap stays a memmap).

    Raises:
        ValueError: wrong rank, N < 1, C < 1, L < ``min_length``, NaN/inf (how many, where the first is).
        TypeError: non-numeric or complex dtype.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must have rank 3 (N, C, L), got rank {x.ndim} with shape {tuple(x.shape)}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (acceleration in g), got dtype {x.dtype}")
    n, c, length = x.shape
    if n < 1:
        raise ValueError(f"{name} holds no windows (N = 0, shape {tuple(x.shape)}); expected N >= 1")
    if c < 1:
        raise ValueError(f"{name} has no channels (C = 0, shape {tuple(x.shape)})")
    if length < min_length:
        raise ValueError(f"{name} windows are too short: L = {length} samples (shape {tuple(x.shape)}), "
                         f"expected L >= {min_length} (10 s at 30 Hz is L = 300)")
    if check_finite and x.dtype.kind == "f":
        msg = _first_nonfinite(x, name)
        if msg is not None:
            raise ValueError(msg)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
        if check_finite and not np.isfinite(x).all():  # e.g. float64 values beyond the float32 range
            raise ValueError(f"{name} overflows float32 (values beyond +-3.4e38)")
    return x


def _labels_array(y: Any, n: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match x, got shape {tuple(y.shape)}")
    if y.dtype.kind == "S":
        y = y.astype(str)
    return y


@dataclass(eq=False, repr=False)
class WindowDataset:
    """N fixed-length windows with subject ids and optional labels.

    Attributes:
        x: ``(N, C, L)`` float32 in g, channels-first; may be a read-only (memmap-backed) array.
        pid: ``(N,)`` subject ids (int or str).
        y: ``(N,)`` labels (int or str) or None; int :data:`UNLABELLED` (str ``""``) marks an unlabelled window.
        label_names: for int labels, ``{code: name}``.
        fs: sampling rate of ``x`` in Hz.

    Construction checks shapes only (cheap); readers run :func:`validate_windows` for the finite check.
    """

    x: np.ndarray
    pid: np.ndarray
    y: Optional[np.ndarray] = None
    label_names: Optional[dict[int, str]] = None
    fs: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray):
            self.x = np.asarray(self.x, dtype=np.float32)
        if self.x.ndim != 3:
            raise ValueError(f"x must have shape (N, C, L), got shape {tuple(self.x.shape)}")
        if self.x.dtype.kind not in "fiu":
            raise TypeError(f"x must hold real numbers (acceleration in g), got dtype {self.x.dtype}")
        if self.x.dtype != np.float32:
            self.x = self.x.astype(np.float32)
        n = self.x.shape[0]
        self.pid = _labels_array(self.pid, n, "pid")
        if self.y is not None:
            self.y = _labels_array(self.y, n, "y")
        if self.label_names is not None:
            self.label_names = {int(k): str(v) for k, v in dict(self.label_names).items()}
        self.fs = float(self.fs)
        if not self.fs > 0:
            raise ValueError(f"fs must be a positive rate in Hz, got {self.fs}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_channels(self) -> int:
        """C."""
        return int(self.x.shape[1])

    @property
    def window_length(self) -> int:
        """L (samples per window)."""
        return int(self.x.shape[2])

    @property
    def subjects(self) -> np.ndarray:
        """Sorted unique subject ids."""
        return np.unique(self.pid)

    def subset(self, index: Any) -> "WindowDataset":
        """The windows selected by ``index``: an int array (any order, repeats allowed), a bool mask of
        length N, or a slice. Fancy indexing copies (a memmap subset is an in-memory array)."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise ValueError(f"bool mask must have shape ({len(self)},), got {tuple(index.shape)}")
            elif index.dtype.kind in "iu":
                index = index.reshape(-1)
                if index.size and (index.max() >= len(self) or index.min() < -len(self)):
                    raise IndexError(f"index out of range for a dataset of {len(self)} windows")
            elif index.size == 0:
                index = index.astype(np.int64)
            else:
                raise TypeError(f"index must be an int array, a bool mask or a slice, got dtype {index.dtype}")
        return WindowDataset(x=self.x[index], pid=self.pid[index],
                             y=None if self.y is None else self.y[index],
                             label_names=None if self.label_names is None else dict(self.label_names),
                             fs=self.fs)

    def labelled_mask(self) -> np.ndarray:
        """``(N,)`` bool: True where the window has a label (not :data:`UNLABELLED` / ``""``)."""
        if self.y is None:
            raise ValueError("this dataset has no labels (y is None): there are no labelled windows to select")
        if self.y.dtype.kind in "iu":
            return self.y != UNLABELLED
        if self.y.dtype.kind == "U":
            return self.y != UNLABELLED_STR
        return np.array([not (v is None or (isinstance(v, str) and v == UNLABELLED_STR)
                              or (isinstance(v, (int, np.integer)) and v == UNLABELLED)) for v in self.y],
                        dtype=bool)

    def labelled(self) -> "WindowDataset":
        """The windows that carry a label (drops :data:`UNLABELLED`). Raises ValueError if ``y`` is None."""
        return self.subset(self.labelled_mask())

    def __repr__(self) -> str:
        lab = "none" if self.y is None else f"{int(self.labelled_mask().sum())} labelled"
        return (f"WindowDataset(N={len(self)}, C={self.n_channels}, L={self.window_length}, fs={self.fs:g} Hz, "
                f"subjects={len(self.subjects)}, labels={lab})")
