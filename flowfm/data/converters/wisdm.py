"""WISDM Smartphone and Smartwatch Activity and Biometrics (2019) -> standard windows (watch, 18 activities).

Source: Weiss, "WISDM Smartphone and Smartwatch Activity and Biometrics Dataset", UCI 2019;
https://archive.ics.uci.edu/dataset/507 (``wisdm-dataset/raw/watch/accel/data_16xx_accel_watch.txt``).

Raw format: one text file per subject, one sample per line ``subject,activity_code,timestamp,x,y,z;`` (the line
ends with ``;``), 20 Hz, acceleration in m/s^2 (divided by 9.80665; the magnitude check refuses g data),
timestamp in ns. Used here: the **smartwatch accelerometer** (watch on the dominant wrist).

Choices (as SSL-Wearables):

* classes: all 18 activity codes, A walking, B jogging, C stairs, D sitting, E standing, F typing, G teeth
  (brushing), H soup, I chips, J pasta, K drinking, L sandwich, M kicking, O catch, P dribbling, Q writing,
  R clapping, S folding (codes 0-17 in that order; there is no N). Any other code is an error;
* subjects: all files found (1600-1650), no exclusion; the subject id is the first field (int);
* a recording is a run of consecutive lines with the same activity, cut where the timestamp jumps by > 1 s or
  goes backwards. If a file's median timestamp step is not 10-200 ms in ns (timestamps in another unit), the
  timestamps are ignored and only activity changes cut.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .labelled_recording import Recording, Source, check_columns, raw_files, split_at_time_gaps, to_g

NAME = "wisdm"
DESCRIPTION = "WISDM 2019 raw/watch/accel/data_16xx_accel_watch.txt, 20 Hz m/s^2, 18 activities"
FS = 20.0
CODES = "ABCDEFGHIJKLMOPQRS"
LABEL_NAMES = ("walking", "jogging", "stairs", "sitting", "standing", "typing", "teeth", "soup", "chips", "pasta",
               "drinking", "sandwich", "kicking", "catch", "dribbling", "writing", "clapping", "folding")
_CODE_TO_LABEL = {c: i for i, c in enumerate(CODES)}
_COLUMNS = ("subject", "activity_code", "timestamp", "x", "y", "z")
_EXPECTED = "WISDM 2019 raw/watch/accel/data_16xx_accel_watch.txt lines 'subject,activity_code,timestamp,x,y,z;'"


def _parse(path: Path) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    subjects, codes, times, xyz = set(), [], [], []
    with open(path, "r", encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip().rstrip(";").strip()
            if not line:
                continue
            fields = line.split(",")
            check_columns(len(fields), 6, str(path), lineno, _COLUMNS)
            code = fields[1].strip()
            if code not in _CODE_TO_LABEL:
                raise ValueError(f"{path}, line {lineno}: unknown activity code {code!r}; expected one of "
                                 f"{', '.join(CODES)}")
            try:
                subjects.add(int(fields[0]))
                times.append(float(fields[2]))
                xyz.append((float(fields[3]), float(fields[4]), float(fields[5])))
            except ValueError:
                raise ValueError(f"{path}, line {lineno}: non-numeric subject/timestamp/x/y/z in {line[:80]!r}; "
                                 f"expected {_EXPECTED}") from None
            codes.append(_CODE_TO_LABEL[code])
    if not xyz:
        raise ValueError(f"{path}: empty file (expected {_EXPECTED})")
    if len(subjects) != 1:
        raise ValueError(f"{path}: lines of several subjects {sorted(subjects)}; expected one subject per file")
    return subjects.pop(), np.array(codes, dtype=np.int64), np.array(times), np.array(xyz, dtype=np.float64)


def _read_file(path: Path) -> Iterator[Recording]:
    subject, codes, t, xyz = _parse(path)
    acc = to_g(xyz, "m/s^2", str(path))
    step = np.median(np.diff(t)) if len(t) > 1 else 0.0
    use_time = 1e7 <= step <= 2e8  # 10-200 ms in ns
    change = np.flatnonzero(np.diff(codes)) + 1
    bounds = np.concatenate(([0], change, [len(codes)]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        parts = split_at_time_gaps(t[a:b], max_gap=1e9) if use_time else [slice(0, b - a)]
        for p in parts:
            s = slice(a + p.start, a + p.stop)
            yield Recording(acc[s], codes[s], FS, subject, f"{path} lines {s.start + 1}-{s.stop}")


def read(raw_dir: Union[str, Path]) -> Source:
    """The recordings of ``raw_dir`` (any folder holding ``data_*_accel_watch.txt``, searched recursively)."""
    files = raw_files(raw_dir, "**/data_*_accel_watch.txt", _EXPECTED)

    def recordings() -> Iterator[Recording]:
        for path in files:
            yield from _read_file(path)

    return Source(LABEL_NAMES, recordings())
