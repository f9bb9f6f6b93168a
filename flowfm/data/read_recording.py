"""Recordings as researchers have them: a table with a clock, named axis columns and optional label / subject columns.

:func:`read_recordings` reads CSV (``.csv``, ``.csv.gz``, ``.txt``), parquet or ``.npy`` files with pandas (and
device files, ``.cwa`` / ``.gt3x`` / ``.bin``, with actipy: :mod:`flowfm.data.device_files`) and returns one
:class:`TimedRecording` per subject:

1. **columns**: the clock (``time_column``, else the first of ``time``, ``timestamp``, ``datetime``, ``t``, ...),
   the x / y / z axes (``axes``, else common spellings such as ``x``, ``acc_x``, ``accel_x``, ``ax``, ``x-axis``,
   matched case- and punctuation-insensitively), optional ``label_column`` and ``subject_column``;
2. **clock**: ISO date-time text becomes epoch seconds; numbers are epoch milliseconds (> 1e11), epoch seconds
   (> 1e8) or seconds from the start (``time_unit`` overrides: ``"s"`` or ``"ms"``). A clock that goes backwards
   or repeats a time is refused;
3. **rate**: ``fs`` if stated, else the clock's mean rate over its gap-free steps (4 significant digits); steps longer than ``max_gap_s`` split the
   recording into segments, and each segment is interpolated linearly onto a uniform grid at that rate (a jittery
   phone clock becomes a regular signal). Rows with a non-finite axis are dropped first, so a short NaN run is
   bridged like a short gap and a long one splits the recording;
4. **units**: the median magnitude must match the declared ``unit`` (:func:`~flowfm.data.units.check_unit`); the
   signal is returned in g.

:meth:`TimedRecording.windows` then resamples to the model's rate (polyphase, :func:`~flowfm.data.resample.
resample_to`) and cuts labelled windows with their start times, as the dataset converters do (10 s, 5 s hop, a
label kept when it covers >= 80 % of a window).

The headerless ``(T, C)`` ``.npy`` / ``.csv`` files of :mod:`flowfm.data.recording` (no clock: the rate is stated)
are still read by that streaming module; this one is for files that carry their own clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .device_files import is_device_file, read_device_file
from .resample import make_windows, resample_labels, resample_to, window_params
from .units import canonical_unit, check_unit, median_magnitude

__all__ = ["TimedRecording", "Segment", "read_recordings", "read_recording", "TABLE_SUFFIXES", "has_clock"]

TABLE_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv", ".parquet", ".pq", ".npy")
TIME_NAMES = ("time", "timestamp", "datetime", "date_time", "t", "ts", "epoch", "unixtime", "unix_time",
              "time_s", "timestamp_ms", "elapsed")
#: normalised spellings of an axis column, with "{a}" standing for x, y or z
AXIS_PATTERNS = ("{a}", "acc{a}", "accel{a}", "a{a}", "{a}axis", "accelerometer{a}", "acceleration{a}",
                 "acc{a}g", "accelerometer{a}g", "{a}g", "acc{a}ms2", "{a}acc", "{a}accel")
LABEL_NAMES = ("label", "activity", "annotation", "class")
SUBJECT_NAMES = ("subject", "pid", "participant", "user", "subject_id", "participant_id", "user_id")


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


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _find(columns: Sequence[str], wanted: Optional[str], candidates: Sequence[str], what: str,
          source: str) -> Optional[str]:
    if wanted is not None:
        for col in columns:
            if str(col) == wanted or _norm(col) == _norm(wanted):
                return col
        raise ValueError(f"{source}: no {what} column {wanted!r}; columns are {list(map(str, columns))}")
    by_norm = {_norm(c): c for c in columns}
    for cand in candidates:
        if _norm(cand) in by_norm:
            return by_norm[_norm(cand)]
    return None


def _find_axes(columns: Sequence[str], axes: Optional[Sequence[str]], source: str) -> list[str]:
    if axes is not None:
        return [_find(columns, a, (), "axis", source) for a in axes]
    by_norm = {_norm(c): c for c in columns}
    found = []
    for a in "xyz":  # each axis by its first matching spelling (files are not always consistent)
        match = next((by_norm[p.format(a=a)] for p in AXIS_PATTERNS if p.format(a=a) in by_norm), None)
        if match is None:
            found = []
            break
        found.append(match)
    if not found:
        raise ValueError(f"{source}: no x / y / z acceleration columns found among {list(map(str, columns))}; "
                         "expected names like x, acc_x, accel_x, ax or x-axis (or pass axes=[...] / --axes X,Y,Z)")
    return found


def _read_table(path: Path):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("reading recordings with a clock needs pandas: pip install 'flowfm[io]'") from None
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path)
        except ImportError:
            raise ImportError("reading parquet needs pyarrow: pip install 'flowfm[io]'") from None
    if name.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.dtype.names:
            return pd.DataFrame({n: arr[n] for n in arr.dtype.names})
        if arr.ndim != 2:
            raise ValueError(f"{path}: a .npy recording must be 2-D (T, columns), got shape {arr.shape}")
        return pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])])
    sep = "\t" if name.endswith(".tsv") else None
    try:
        return pd.read_csv(path, sep=sep, engine="python" if sep is None else "c")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from None


def _epoch_seconds(values, source: str, time_unit: Optional[str]) -> tuple[np.ndarray, bool]:
    """(clock in seconds (float64), absolute?) from a time column."""
    import pandas as pd

    if values.dtype.kind in "iuf" and time_unit not in ("iso",):
        t = values.to_numpy(dtype=np.float64)
        if time_unit == "ms":
            return t / 1000.0, bool(np.nanmedian(t) > 1e11)
        if time_unit == "s":
            return t, bool(np.nanmedian(t) > 1e8)
        if time_unit is not None:
            raise ValueError(f"time_unit={time_unit!r}; expected 's', 'ms' or 'iso'")
        med = float(np.nanmedian(t)) if len(t) else 0.0
        if med > 1e11:
            return t / 1000.0, True
        return t, med > 1e8
    if values.dtype.kind == "M":
        stamps = pd.to_datetime(values, utc=True)
    else:
        try:
            stamps = pd.to_datetime(values, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{source}: the time column is neither numbers nor ISO date-times "
                             f"(e.g. {str(values.iloc[0])!r}): {exc}") from None
    seconds = (pd.Series(stamps) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(1, "s")  # any datetime resolution
    return seconds.to_numpy(dtype=np.float64, na_value=np.nan), True


def _uniform(t: np.ndarray, values: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of ``values (n, C)`` at times ``t (n,)`` onto ``t[0] + k / fs``; returns (grid, out)."""
    n_out = int(np.floor((t[-1] - t[0]) * fs + 1e-9)) + 1
    grid = t[0] + np.arange(n_out) / fs
    out = np.empty((n_out, values.shape[1]), dtype=np.float64)
    for c in range(values.shape[1]):
        out[:, c] = np.interp(grid, t, values[:, c])
    return grid, out


def read_recordings(path: Union[str, Path], *, fs: Optional[float] = None, unit: Optional[str] = None,
                    time_column: Optional[str] = None, time_unit: Optional[str] = None,
                    axes: Optional[Sequence[str]] = None, label_column: Optional[str] = None,
                    subject_column: Optional[str] = None, subject: Optional[str] = None,
                    max_gap_s: float = 1.0, calibrate: bool = True, detect_nonwear: bool = True,
                    nonwear_patience: Optional[str] = None) -> list[TimedRecording]:
    """Read one file into one :class:`TimedRecording` per subject (module docstring for the rules).

    Device files (``.cwa``, ``.gt3x``, ``.bin``) go to :func:`~flowfm.data.device_files.read_device_file` (actipy:
    ``calibrate``, ``detect_nonwear``, ``nonwear_patience``; the device's own clock, rate and g units, so ``fs``
    and the column options do not apply).

    ``subject`` names the subject of a file without a subject column (default: the file name without suffixes).
    ``label_column`` None looks for a column named label / activity / annotation / class; pass ``""`` for none.

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: no clock or axis columns, a clock that is not increasing, too few rows, a rate that cannot be
            read off the clock, or data whose magnitude contradicts ``unit`` (the message names the file).
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a CSV / parquet / .npy recording or a "
                                ".cwa / .gt3x / .bin device file)")
    if fs is not None and not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive number of Hz, got {fs}")
    if not max_gap_s > 0:
        raise ValueError(f"max_gap_s must be > 0 seconds, got {max_gap_s}")
    declared = canonical_unit(unit)
    if is_device_file(path):
        if declared not in (None, "g"):
            raise ValueError(f"{source}: device files are read in g (actipy); --unit {unit} does not apply")
        return [read_device_file(path, subject=subject, calibrate=calibrate, detect_nonwear=detect_nonwear,
                                 nonwear_patience=nonwear_patience, max_gap_s=max_gap_s)]
    df = _read_table(path)
    columns = list(df.columns)
    tcol = _find(columns, time_column, TIME_NAMES, "time", source)
    if tcol is None:
        raise ValueError(f"{source}: no time column among {list(map(str, columns))}; expected one named time / "
                         "timestamp / datetime (pass time_column= / --time-column), or use a headerless (T, C) file "
                         "with a stated rate (--fs)")
    axis_cols = _find_axes([c for c in columns if c != tcol], axes, source)
    lcol = None if label_column == "" else _find(columns, label_column, LABEL_NAMES, "label", source)
    scol = _find(columns, subject_column, SUBJECT_NAMES, "subject", source) if subject_column else None
    if len(df) < 2:
        raise ValueError(f"{source}: {len(df)} row(s); a recording needs at least 2")
    default_subject = subject if subject is not None else path.name.split(".")[0]
    groups = [(default_subject, df)] if scol is None else [(str(k), g) for k, g in df.groupby(scol, sort=True)]
    out = []
    for subj, part in groups:
        out.append(_one_recording(part, source if scol is None else f"{source} (subject {subj})", subj, tcol,
                                  axis_cols, lcol, fs, declared, time_unit, max_gap_s))
    return out


def _one_recording(df, source, subject, tcol, axis_cols, lcol, fs, declared, time_unit, max_gap_s):
    t, absolute = _epoch_seconds(df[tcol], source, time_unit)
    values = df[axis_cols].apply(_as_number, args=(source,)).to_numpy(dtype=np.float64)
    labels = None
    if lcol is not None:
        raw = df[lcol]
        labels = np.where(raw.isna().to_numpy(), "", raw.astype(str).to_numpy()).astype(str)
    return recording_from_samples(t, values, labels=labels, source=source, subject=subject,
                                  channels=tuple(str(c) for c in axis_cols), fs=fs, unit=declared,
                                  absolute=absolute, max_gap_s=max_gap_s)


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


def _as_number(col, source):
    import pandas as pd

    out = pd.to_numeric(col, errors="coerce")
    if out.isna().all() and not col.isna().all():
        raise ValueError(f"{source}: column {col.name!r} holds no numbers (e.g. {str(col.iloc[0])!r})")
    return out


def read_recording(path: Union[str, Path], **kwargs) -> TimedRecording:
    """:func:`read_recordings` for a file of one subject; ValueError when the subject column holds several."""
    recs = read_recordings(path, **kwargs)
    if len(recs) != 1:
        raise ValueError(f"{path} holds {len(recs)} subjects ({', '.join(r.subject for r in recs[:5])}...); use "
                         "read_recordings() for one recording per subject")
    return recs[0]


def has_clock(path: Union[str, Path]) -> bool:
    """Whether a device file, a parquet file or a CSV with a header naming a time column (then :func:`read_recordings` reads it);
    headerless numeric files are the streaming reader's (:mod:`flowfm.data.recording`)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")) or is_device_file(path):
        return True
    if not name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        return False
    import gzip

    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        header = f.readline()
    fields = [_norm(h) for h in re.split(r"[,;\t]", header)]
    return any(_norm(n) in fields for n in TIME_NAMES)
