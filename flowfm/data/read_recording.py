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
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .device_files import is_device_file, read_device_file
from .timed_recording import Segment, TimedRecording, recording_from_samples
from .units import canonical_unit

__all__ = ["TimedRecording", "Segment", "read_recordings", "read_recording", "TABLE_SUFFIXES", "has_clock"]

TABLE_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv", ".parquet", ".pq", ".npy")
TIME_NAMES = ("time", "timestamp", "datetime", "date_time", "t", "ts", "epoch", "unixtime", "unix_time",
              "time_s", "timestamp_ms", "elapsed")
#: normalised spellings of an axis column, with "{a}" standing for x, y or z
AXIS_PATTERNS = ("{a}", "acc{a}", "accel{a}", "a{a}", "{a}axis", "accelerometer{a}", "acceleration{a}",
                 "acc{a}g", "accelerometer{a}g", "{a}g", "acc{a}ms2", "{a}acc", "{a}accel")
LABEL_NAMES = ("label", "activity", "annotation", "class")
SUBJECT_NAMES = ("subject", "pid", "participant", "user", "subject_id", "participant_id", "user_id")


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
