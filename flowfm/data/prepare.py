"""Recordings with a clock -> the standard window folder (design §2), the step behind ``flowfm prepare``.

Each file is read by :func:`~flowfm.data.read_recording.read_recordings` (one recording per subject: from a
subject column, else the file name), resampled to 30 Hz and cut into 10 s windows with a 5 s hop; a window keeps a
label only when one label covers >= 80 % of it. The folder gets

    X.npy    (N, 300, C) float32 in g, channels-last        Y.npy   (N,) str labels ("" = unlabelled)
    pid.npy  (N,) subject ids (str)                          time.npy (N,) float64 window start times: epoch
    meta.json  fs, the source files, their rates and units            seconds when the clock is absolute

written in one atomic step, so an error leaves ``out`` as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from .folder import check_out_dir, save_folder
from .read_recording import read_recordings
from .windows import WindowDataset

__all__ = ["PrepareSummary", "prepare_recordings"]


@dataclass
class PrepareSummary:
    """What :func:`prepare_recordings` wrote."""

    out_dir: Path
    n_windows: int
    windows_per_subject: dict[str, int]
    label_counts: dict[str, int]
    n_unlabelled: int
    sources: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        subjects = ", ".join(f"{k} {v}" for k, v in self.windows_per_subject.items())
        lines = [f"{self.n_windows} windows (10 s at 30 Hz) of {len(self.windows_per_subject)} subject(s) -> "
                 f"{self.out_dir}", f"  windows per subject: {subjects}"]
        if self.label_counts:
            lines.append("  labels: " + ", ".join(f"{k} {v}" for k, v in self.label_counts.items())
                         + (f"; unlabelled {self.n_unlabelled}" if self.n_unlabelled else ""))
        for s in self.sources:
            lines.append(f"  {s['file']}: subject {s['subject']}, {s['fs']:g} Hz, {s['unit']}, "
                         f"{s['segments']} segment(s), {s['windows']} windows")
        return "\n".join(lines)


def prepare_recordings(paths: Sequence[Union[str, Path]], out: Union[str, Path], *, overwrite: bool = False,
                       keep_unlabelled: bool = False, fs_out: float = 30.0, window_s: float = 10.0,
                       hop_s: float = 5.0, min_label_fraction: float = 0.8, **read_kwargs: Any) -> PrepareSummary:
    """Read every file of ``paths`` and write the window folder ``out`` (module docstring).

    Windows without a label are dropped from labelled recordings unless ``keep_unlabelled``; recordings without a
    label column keep every window (an unlabelled folder, for pretraining). ``read_kwargs`` go to
    :func:`read_recordings` (``fs``, ``unit``, ``time_column``, ``axes``, ``label_column``, ``subject_column``,
    ``max_gap_s``, ...).

    Raises:
        FileExistsError: ``out`` exists, is not empty and ``overwrite`` is False (checked before reading).
        ValueError: a file cannot be read (the message names it), channel counts differ between files, or no window
            results.
    """
    out = check_out_dir(out, overwrite)
    if not paths:
        raise ValueError("no recordings given")
    xs, ys, pids, times, sources = [], [], [], [], []
    channels = None
    any_labels = False
    for path in paths:
        for rec in read_recordings(path, **read_kwargs):
            if channels is None:
                channels = len(rec.channels)
            elif len(rec.channels) != channels:
                raise ValueError(f"{rec.source} has {len(rec.channels)} axis columns; earlier files had {channels}")
            x, start, y = rec.windows(fs_out, window_s, hop_s, min_label_fraction)
            if y is not None:
                any_labels = True
                if not keep_unlabelled:
                    keep = y != ""
                    x, start, y = x[keep], start[keep], y[keep]
            xs.append(x)
            ys.append(y if y is not None else np.full(len(x), ""))
            pids.append(np.full(len(x), rec.subject))
            times.append(start)
            sources.append({"file": str(path), "subject": rec.subject, "fs": rec.fs, "unit": rec.unit,
                            "channels": list(rec.channels), "absolute_time": rec.absolute_time,
                            "segments": len(rec.segments), "windows": int(len(x)),
                            **({"device": rec.info} if rec.info else {})})
    n = int(sum(len(x) for x in xs))
    if n == 0:
        raise ValueError(f"no {window_s:g} s window in {len(sources)} recording(s): every segment is shorter than "
                         f"{window_s:g} s" + ("" if keep_unlabelled else " or no window has one label over "
                                               f">= {min_label_fraction:.0%} of it") + f"; nothing written to {out}")
    x_all, y_all = np.concatenate(xs), np.concatenate(ys).astype(str)
    pid_all, t_all = np.concatenate(pids).astype(str), np.concatenate(times).astype(np.float64)
    ds = WindowDataset(x=x_all, pid=pid_all, y=y_all if any_labels else None, fs=fs_out)
    save_folder(ds, out, overwrite=True, extra_arrays={"time.npy": t_all},
                extra_meta={"unit": "g", "window_s": window_s, "hop_s": hop_s, "sources": sources,
                            "time": "epoch seconds" if all(s["absolute_time"] for s in sources) else
                                    "seconds from each recording's start"})
    names, counts = np.unique(y_all[y_all != ""], return_counts=True)
    subj, per = np.unique(pid_all, return_counts=True)
    return PrepareSummary(out_dir=out, n_windows=n, windows_per_subject=dict(zip(subj.tolist(), per.tolist())),
                          label_counts=dict(zip(names.tolist(), counts.tolist())) if any_labels else {},
                          n_unlabelled=int((y_all == "").sum()) if any_labels else 0, sources=sources)
