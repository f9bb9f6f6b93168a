"""A recording on a uniform clock: :class:`TimedRecording` (one subject, segments split at gaps, in g) and
:func:`recording_from_samples`, which builds one from timed samples, for every reader (tables with a clock,
:mod:`flowfm.data.read_recording`; device files, :mod:`flowfm.data.device_files`).

From samples at increasing times ``t (n,)``: rows with a non-finite axis are dropped (a short NaN run is bridged
like a short gap, a long one splits the recording); the median magnitude must match the declared unit
(:func:`~flowfm.data.units.check_unit`); the rate is ``fs`` if stated, else the clock's mean rate over its gap-free
steps (4 significant digits); steps longer than ``max_gap_s`` split the recording into segments, each interpolated
linearly onto a uniform grid at that rate. :meth:`TimedRecording.windows` then resamples to the model's rate
(polyphase) and cuts labelled windows with their start times (10 s, 5 s hop, a label kept when it covers >= 80 %
of a window).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .resample import make_windows, resample_labels, resample_to, window_params
from .units import check_unit, median_magnitude

__all__ = ["Segment", "TimedRecording", "recording_from_samples"]


@dataclass
class Segment:
    """A stretch of uniformly sampled signal: ``signal (T, C)`` float32 in g, ``start`` the time of its first
    sample (epoch seconds when the clock is absolute, else seconds from the recording's start), ``labels (T,)``
    per-sample labels (str) or None."""

    signal: np.ndarray
    start: float
    labels: Optional[np.ndarray] = None


@dataclass
class TimedRecording:
    """One subject's recording from one file: uniformly sampled ``segments`` at ``fs`` Hz, in g."""

    source: str
    subject: str
    fs: float
    channels: tuple[str, ...]
    absolute_time: bool
    unit: str
    segments: list[Segment] = field(default_factory=list)
    #: reader metadata, e.g. actipy's calibration / non-wear report for device files
    info: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(sum(len(s.signal) for s in self.segments))

    @property
    def labelled(self) -> bool:
        return any(s.labels is not None for s in self.segments)

    def windows(self, fs_out: float = 30.0, window_s: float = 10.0, hop_s: float = 5.0,
                min_label_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """``x (N, C, L)`` float32 in g at ``fs_out``, ``start (N,)`` float64 window start times (the segment's
        clock plus ``k * hop``), ``y (N,)`` str labels (``""`` where no label covers ``min_label_fraction``) or
        None for an unlabelled recording. Segments shorter than one window give none."""
        length, hop = window_params(fs_out, window_s, hop_s)
        xs, starts, ys = [], [], []
        for seg in self.segments:
            if len(seg.signal) < 2:
                continue
            sig = resample_to(seg.signal.astype(np.float64), self.fs, fs_out, axis=0)
            if sig.shape[0] < length:
                continue
            lab = None
            if seg.labels is not None:
                lab = resample_labels(seg.labels, self.fs, fs_out, sig.shape[0])
            x, y = make_windows(sig, fs_out, lab, window_s=window_s, hop_s=hop_s,
                                min_label_fraction=min_label_fraction,
                                valid_labels=None if lab is None else set(np.unique(lab)) - {""})
            ys.append(y)
            xs.append(x.astype(np.float32))
            starts.append(seg.start + np.arange(len(x)) * hop / fs_out)
        c = len(self.channels)
        if not xs:
            return (np.zeros((0, c, length), np.float32), np.zeros(0), np.zeros(0, dtype=str) if self.labelled
                    else None)
        y_all = None if all(y is None for y in ys) else np.concatenate(
            [y if y is not None else np.full(len(x), "") for x, y in zip(xs, ys)]).astype(str)
        return np.concatenate(xs), np.concatenate(starts), y_all


def _uniform(t: np.ndarray, values: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of ``values (n, C)`` at times ``t (n,)`` onto ``t[0] + k / fs``; returns (grid, out)."""
    n_out = int(np.floor((t[-1] - t[0]) * fs + 1e-9)) + 1
    grid = t[0] + np.arange(n_out) / fs
    out = np.empty((n_out, values.shape[1]), dtype=np.float64)
    for c in range(values.shape[1]):
        out[:, c] = np.interp(grid, t, values[:, c])
    return grid, out


def recording_from_samples(t: np.ndarray, values: np.ndarray, *, labels: Optional[np.ndarray], source: str,
                           subject: str, channels: tuple[str, ...], fs: Optional[float], unit: Optional[str],
                           absolute: bool, max_gap_s: float) -> TimedRecording:
    """Samples at times ``t (n,)`` (seconds, increasing) with axes ``values (n, C)`` and optional per-sample
    ``labels (n,)`` -> a :class:`TimedRecording` in g (steps 3-4 of the module docstring). Rows with a non-finite
    axis are dropped; ``fs`` None reads the rate off the clock; ``unit`` None detects it by magnitude."""
    if not np.isfinite(t).all():
        raise ValueError(f"{source}: the time column has {int((~np.isfinite(t)).sum())} missing or non-numeric "
                         "values")
    step = np.diff(t)
    if (step <= 0).any():
        i = int(np.flatnonzero(step <= 0)[0])
        raise ValueError(f"{source}: the clock is not increasing at row {i + 2} ({t[i]:.6f} then {t[i + 1]:.6f} s); "
                         "sort the file by time and drop duplicated timestamps")
    finite = np.isfinite(values).all(axis=1)
    t, values = t[finite], values[finite]
    labels = None if labels is None else labels[finite]
    if len(t) < 2:
        raise ValueError(f"{source}: fewer than 2 rows with finite x / y / z")
    per_g = check_unit(median_magnitude(values), source, unit)
    steps = np.diff(t)
    rate = fs
    if fs is None:  # mean step within gap-free stretches (the median of a jittery clock is biased), 4 digits
        within = steps[steps <= max_gap_s]
        rate = float(f"{len(within) / float(within.sum()):.4g}") if len(within) else 0.0
        if not 1.0 <= rate <= 10_000:
            hint = " (if the clock is in milliseconds, pass time_unit='ms' / --time-unit ms)" if rate < 1 else ""
            raise ValueError(f"{source}: the clock gives a median rate of {rate:g} Hz, outside 1-10,000 Hz{hint}")
    cuts = np.flatnonzero(steps > max_gap_s) + 1
    bounds = np.concatenate(([0], cuts, [len(t)]))
    segments = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < 2:
            continue
        grid, sig = _uniform(t[a:b], values[a:b], rate)
        seg_labels = None
        if labels is not None:
            nearest = np.clip(np.searchsorted(t[a:b], grid, side="right") - 1, 0, b - a - 1)
            seg_labels = labels[a:b][nearest]
        segments.append(Segment((sig / per_g).astype(np.float32), float(grid[0]), seg_labels))
    return TimedRecording(source=source, subject=str(subject), fs=float(rate), channels=tuple(channels),
                          absolute_time=bool(absolute), unit=unit or "g", segments=segments)
