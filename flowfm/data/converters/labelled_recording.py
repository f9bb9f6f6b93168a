"""A continuous accelerometer recording, and how it becomes standard windows (docs/design.md §2).

Every converter reads its raw files into :class:`Recording` objects: one uninterrupted stretch of ``(T, 3)``
acceleration **in g** at a nominal rate ``fs`` with ``(T,)`` per-sample int label codes (``0..K-1`` index the
converter's label names, ``-1`` = no usable label: transient, null class, unannotated). This module does the
rest, identically for all datasets:

1. units: :func:`~flowfm.data.units.to_g` converts from the file's unit and checks the resting magnitude (median
   ``|a|`` about 1 g), so a file in the wrong unit fails with a message naming the file instead of producing garbage;
2. gaps: :func:`split_at_time_gaps` cuts a recording where its timestamps jump (> 1 s), and
   :func:`finite_segments` linearly interpolates NaN runs of at most 1 s (dropped packets) and cuts at longer ones;
3. resampling to 30 Hz with the polyphase :func:`~flowfm.data.resample.resample_to` (labels by nearest sample,
   :func:`~flowfm.data.resample.resample_labels`);
4. windowing with :func:`~flowfm.data.resample.make_windows`: 10 s windows, 5 s hop, a window keeps its
   majority label only if that label is valid and covers >= 80 % of it, else it is unlabelled (-1);
5. :func:`write_dataset`: windows are spilled to a temp file beside ``out_dir`` (so a day-long Capture-24 corpus
   never sits in memory), then written with :func:`~flowfm.data.folder.save_folder`, which is atomic. Any error
   leaves ``out_dir`` untouched (absent, or its previous content).

Not to be confused with :mod:`flowfm.data.recording`, which streams *unlabelled* ``.npy``/``.csv`` recordings in
blocks for pretraining shards; here each (labelled) recording is resampled whole, which bounds memory by one
participant's recording (Capture-24: about 8.6 M samples, some hundred MB).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np

from ..folder import check_out_dir, save_folder  # noqa: F401  (check_out_dir re-exported)
from ..resample import make_windows, resample_labels, resample_to, window_params
from ..units import STANDARD_GRAVITY, UNIT_PER_G, to_g  # noqa: F401  (re-exported)
from ..windows import UNLABELLED, WindowDataset

__all__ = ["Recording", "Source", "ConversionSummary", "STANDARD_GRAVITY", "UNIT_PER_G", "to_g",
           "split_at_time_gaps", "finite_segments", "labelled_windows", "write_dataset", "raw_files",
           "check_columns", "check_out_dir", "read_numeric_table"]


@dataclass
class Recording:
    """One uninterrupted accelerometer recording.

    Attributes:
        signal: ``(T, 3)`` float64 acceleration in g (NaN allowed: handled by :func:`finite_segments`).
        labels: ``(T,)`` int64 label codes, ``-1`` = no usable label.
        fs: sampling rate in Hz.
        subject: subject id (int or str), stored in ``pid.npy``.
        source: the raw file (and part of it) this came from, for error messages.
    """

    signal: np.ndarray
    labels: np.ndarray
    fs: float
    subject: Union[int, str]
    source: str = field(default="")

    def __post_init__(self) -> None:
        self.signal = np.asarray(self.signal, dtype=np.float64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.signal.ndim != 2 or self.signal.shape[1] != 3:
            raise ValueError(f"{self.source}: signal must have shape (T, 3), got {self.signal.shape}")
        if self.labels.shape != (self.signal.shape[0],):
            raise ValueError(f"{self.source}: labels must have shape ({self.signal.shape[0]},), "
                             f"got {self.labels.shape}")


class Source(NamedTuple):
    """What a converter's ``read`` returns: the label names (code ``k`` is ``label_names[k]``) and the
    recordings (an iterable, read lazily so big corpora stream)."""

    label_names: tuple[str, ...]
    recordings: Iterable[Recording]


@dataclass
class ConversionSummary:
    """What :func:`write_dataset` wrote: window count, per-label counts, subjects, recordings read."""

    out_dir: Path
    n_windows: int
    label_counts: dict[str, int]
    n_unlabelled: int
    subjects: list
    n_recordings: int

    def __str__(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in self.label_counts.items())
        return (f"{self.n_windows} windows (10 s at 30 Hz) from {self.n_recordings} recordings of "
                f"{len(self.subjects)} subjects -> {self.out_dir}\n  labels: {labels}"
                + (f"; unlabelled {self.n_unlabelled}" if self.n_unlabelled else ""))


def raw_files(raw_dir: Union[str, Path], pattern: str, expected: str) -> list[Path]:
    """Sorted files under ``raw_dir`` matching the glob ``pattern`` (e.g. ``"**/subject1*.dat"``).

    Raises:
        FileNotFoundError: ``raw_dir`` is missing, or no file matches; the message says what was ``expected``.
    """
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"raw data folder {root} does not exist (expected {expected})")
    found = sorted(p for p in root.glob(pattern) if p.is_file())
    if not found:
        raise FileNotFoundError(f"no raw files matching {pattern!r} under {root}: expected {expected}")
    return found


def label_codes(raw: np.ndarray, mapping: dict) -> np.ndarray:
    """Per-sample int64 codes from a dataset's raw label ids: ``mapping[raw id]``, -1 for ids not in ``mapping``."""
    codes = np.full(len(raw), -1, dtype=np.int64)
    for value, code in mapping.items():
        codes[raw == value] = code
    return codes


def split_at_time_gaps(t: Any, max_gap: float) -> list[slice]:
    """Slices of ``t`` (timestamps, any unit) between jumps: a step ``> max_gap`` (same unit) or backwards
    starts a new piece. Duplicated timestamps (step 0) do not split."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return []
    step = np.diff(t)
    cuts = np.flatnonzero((step > max_gap) | (step < 0)) + 1
    bounds = np.concatenate(([0], cuts, [t.size]))
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def finite_segments(signal: np.ndarray, fs: float, max_gap_s: float = 1.0) -> list[tuple[slice, np.ndarray]]:
    """Repair or cut the NaN/inf rows of a ``(T, C)`` signal.

    A run of non-finite rows of at most ``max_gap_s`` seconds with finite rows on both sides is filled by
    linear interpolation (per channel); longer runs and runs at the start/end are cut out.

    Returns:
        ``[(slice, segment)]``: each finite stretch as a slice of the input and the (repaired) ``(t, C)`` data.
    """
    bad = ~np.isfinite(signal).all(axis=1)
    if not bad.any():
        return [(slice(0, len(signal)), signal)]
    t = len(signal)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], bad.astype(np.int8), [0]))))
    starts, stops = edges[::2], edges[1::2]
    max_gap = int(round(max_gap_s * fs))
    short = (starts > 0) & (stops < t) & (stops - starts <= max_gap)
    fixed = signal.copy()
    fill = np.zeros(t, dtype=bool)
    for a, b in zip(starts[short], stops[short]):
        fill[a:b] = True
    if fill.any():
        good = ~bad
        where, known = np.flatnonzero(fill), np.flatnonzero(good)
        for c in range(signal.shape[1]):
            fixed[fill, c] = np.interp(where, known, signal[good, c])
    keep = ~(bad & ~fill)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.astype(np.int8), [0]))))
    return [(slice(int(a), int(b)), fixed[a:b]) for a, b in zip(edges[::2], edges[1::2])]


def labelled_windows(rec: Recording, n_classes: int, *, fs_out: float = 30.0, window_s: float = 10.0,
                      hop_s: float = 5.0, min_label_fraction: float = 0.8, max_gap_s: float = 1.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one recording: gap repair/cut, resampling to ``fs_out``, windowing, labelling.

    Returns:
        ``x (N, 3, L)`` float32 in g (L = ``window_s * fs_out``), ``y (N,)`` int64 in ``0..n_classes-1`` or
        :data:`~flowfm.data.windows.UNLABELLED`.
    """
    bad_codes = (rec.labels < -1) | (rec.labels >= n_classes)
    if bad_codes.any():
        raise ValueError(f"{rec.source}: label code {int(rec.labels[bad_codes][0])} outside -1..{n_classes - 1}")
    length, _ = window_params(fs_out, window_s, hop_s)
    xs, ys = [], []
    for part, seg in finite_segments(rec.signal, rec.fs, max_gap_s):
        if len(seg) < 2:
            continue
        sig = resample_to(seg, rec.fs, fs_out, axis=0)
        lab = resample_labels(rec.labels[part], rec.fs, fs_out, sig.shape[0])
        x, y = make_windows(sig, fs_out, lab, window_s=window_s, hop_s=hop_s,
                            min_label_fraction=min_label_fraction, valid_labels=range(n_classes))
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0, 3, length), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def write_dataset(source: Source, out_dir: Union[str, Path], *, keep_unlabelled: bool = False,
                  overwrite: bool = False, fs_out: float = 30.0, window_s: float = 10.0, hop_s: float = 5.0,
                  min_label_fraction: float = 0.8, max_gap_s: float = 1.0, what: str = "dataset"
                  ) -> ConversionSummary:
    """Window every recording of ``source`` and write the dataset folder ``out_dir`` atomically.

    Windows without a valid label are dropped unless ``keep_unlabelled`` (then they are stored with label -1,
    e.g. for pretraining). ``out_dir`` gets ``X.npy (N, L, 3)`` float32 in g, ``Y.npy (N,)`` int64 codes,
    ``pid.npy (N,)``, ``meta.json`` (fs, ``label_names``).

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is False (checked first).
        ValueError: no window at all (every recording shorter than ``window_s`` or unlabelled), or whatever the
            converter raises; in every case ``out_dir`` is left as it was.
    """
    out = check_out_dir(out_dir, overwrite)
    label_names = tuple(source.label_names)
    n_classes = len(label_names)
    length, _ = window_params(fs_out, window_s, hop_s)
    out.parent.mkdir(parents=True, exist_ok=True)
    ys: list[np.ndarray] = []
    pids: list[np.ndarray] = []
    n_rec = 0
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.convert-") as tmp:
        spill_path = Path(tmp) / "x.f32"
        with open(spill_path, "wb") as spill:
            for rec in source.recordings:
                n_rec += 1
                x, y = labelled_windows(rec, n_classes, fs_out=fs_out, window_s=window_s, hop_s=hop_s,
                                         min_label_fraction=min_label_fraction, max_gap_s=max_gap_s)
                if not keep_unlabelled:
                    x, y = x[y != UNLABELLED], y[y != UNLABELLED]
                if len(x) == 0:
                    continue
                spill.write(np.ascontiguousarray(x, dtype=np.float32).tobytes())
                ys.append(y)
                pids.append(np.full(len(y), rec.subject))
        n = int(sum(len(y) for y in ys))
        if n == 0:
            raise ValueError(
                f"{what}: no {'' if keep_unlabelled else 'labelled '}{window_s:g} s window in {n_rec} recording(s): "
                f"every recording is shorter than {window_s:g} s"
                + ("" if keep_unlabelled else f" or no window has one of the labels {list(label_names)} over "
                   f">= {min_label_fraction:.0%} of it") + f"; nothing written to {out}")
        x_all = np.memmap(spill_path, dtype=np.float32, mode="r", shape=(n, 3, length))
        y_all, pid_all = np.concatenate(ys), np.concatenate(pids)
        ds = WindowDataset(x=x_all, pid=pid_all, y=y_all, label_names=dict(enumerate(label_names)), fs=fs_out)
        save_folder(ds, out, overwrite=True)
        del ds, x_all
    counts = np.bincount(y_all[y_all >= 0], minlength=n_classes)
    return ConversionSummary(out_dir=out, n_windows=n,
                             label_counts={name: int(c) for name, c in zip(label_names, counts)},
                             n_unlabelled=int((y_all == UNLABELLED).sum()),
                             subjects=sorted(np.unique(pid_all).tolist()), n_recordings=n_rec)


def check_columns(row_len: int, needed: int, source: str, line: Optional[int] = None,
                  expected: Sequence[str] = ()) -> None:
    """Raise ValueError if a row has fewer than ``needed`` columns (names the file, line, expected layout)."""
    if row_len < needed:
        where = f"{source}" + (f", line {line}" if line is not None else "")
        layout = f" ({', '.join(expected)})" if expected else ""
        raise ValueError(f"{where}: {row_len} column(s), expected at least {needed}{layout}")


def read_numeric_table(path: Path, n_columns: int, usecols: Sequence[int], expected: str) -> np.ndarray:
    """Read a whitespace-separated numeric text table (``NaN`` allowed) and return the 0-based ``usecols``.

    Raises:
        ValueError: empty file, a row with a column count other than ``n_columns``, or a non-numeric value;
            the message names the file and the ``expected`` layout.
    """
    with open(path, "r", encoding="ascii", errors="replace") as f:
        first = f.readline()
    if not first.strip():
        raise ValueError(f"{path}: empty file (expected {expected})")
    if len(first.split()) != n_columns:
        raise ValueError(f"{path}, line 1: {len(first.split())} columns, expected {n_columns} ({expected})")
    try:
        table = np.loadtxt(path, usecols=tuple(usecols), ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: not a numeric table of {n_columns} whitespace-separated columns "
                         f"({expected}): {e}") from None
    return table
