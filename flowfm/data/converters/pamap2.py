"""PAMAP2 Physical Activity Monitoring -> standard windows (wrist, 8 activities).

Source: Reiss & Stricker, "Introducing a new benchmarked dataset for activity monitoring", ISWC 2012;
https://archive.ics.uci.edu/dataset/231/pamap2+physical+activity+monitoring (``PAMAP2_Dataset/Protocol/
subject101.dat`` .. ``subject109.dat``).

Raw format: one space-separated text file per subject, 54 columns per row, 100 Hz, ``NaN`` for missing values:
column 1 timestamp (s), 2 activity id, 3 heart rate (bpm), 4-20 hand IMU, 21-37 chest IMU, 38-54 ankle IMU; in
each IMU block: temperature, 3D acceleration +-16 g (m/s^2), 3D acceleration +-6 g, gyroscope, magnetometer,
orientation. Used here: **hand (dominant wrist) IMU, +-16 g accelerometer = columns 5, 6, 7** (1-based), in
m/s^2 (divided by 9.80665; the magnitude check refuses a file that is already in g).

Choices (as SSL-Wearables, Yuan et al. 2024):

* classes: the 8 protocol activities every subject performed: 1 lying, 2 sitting, 3 standing, 4 walking,
  12 ascending stairs, 13 descending stairs, 16 vacuum cleaning, 17 ironing (codes 0-7 in that order). Activity
  0 (transient) and the other protocol activities (5 running, 6 cycling, 7 Nordic walking, 24 rope jumping) are
  label -1, so windows dominated by them are dropped (or kept unlabelled with ``keep_unlabelled``);
* files: ``Protocol/`` only (the ``Optional/`` sessions hold none of the 8 classes);
* subject 109 is excluded (it recorded almost none of the 8 activities); pass ``exclude=()`` to keep it;
* dropped packets: NaN runs of the hand accelerometer up to 1 s are linearly interpolated, longer ones cut the
  recording; timestamp jumps > 1 s also cut it (:mod:`.labelled_recording`).

Subject ids: 101-109 (int), from the file name.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .labelled_recording import (Recording, Source, label_codes, raw_files, read_numeric_table,
                                 split_at_time_gaps, to_g)

NAME = "pamap2"
DESCRIPTION = "PAMAP2 Protocol/subject1xx.dat, hand IMU +-16g acc, 100 Hz m/s^2, 8 activities, subject 109 excluded"
FS = 100.0
N_COLUMNS = 54
TIME_COL, ACTIVITY_COL = 0, 1
HAND_ACC16_COLS = (4, 5, 6)  # 0-based: columns 5-7
#: PAMAP2 activity id -> our label code (names in :data:`LABEL_NAMES`).
ACTIVITY_TO_CODE = {1: 0, 2: 1, 3: 2, 4: 3, 12: 4, 13: 5, 16: 6, 17: 7}
LABEL_NAMES = ("lying", "sitting", "standing", "walking", "ascending_stairs", "descending_stairs",
               "vacuum_cleaning", "ironing")
#: All activity ids the dataset defines (others are an error).
KNOWN_ACTIVITIES = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 24}
DEFAULT_EXCLUDE = (109,)
_EXPECTED = "PAMAP2 Protocol/subject1xx.dat: 54 space-separated columns (timestamp, activityID, heart rate, 3 IMUs)"


def _read_file(path: Path, subject: int) -> Iterator[Recording]:
    table = read_numeric_table(path, N_COLUMNS, (TIME_COL, ACTIVITY_COL, *HAND_ACC16_COLS), _EXPECTED)
    t, activity = table[:, 0], table[:, 1]
    if not np.isfinite(activity).all() or not np.isin(activity, list(KNOWN_ACTIVITIES)).all():
        bad = activity[~np.isin(activity, list(KNOWN_ACTIVITIES))]
        raise ValueError(f"{path}: unknown activity id(s) {sorted(set(bad.tolist()))[:5]} in column 2; expected "
                         f"one of {sorted(KNOWN_ACTIVITIES)}")
    acc = to_g(table[:, 2:5], "m/s^2", f"{path} (hand accelerometer, columns 5-7)")
    codes = label_codes(activity, ACTIVITY_TO_CODE)
    for part in split_at_time_gaps(t, max_gap=1.0):
        yield Recording(acc[part], codes[part], FS, subject, f"{path} rows {part.start + 1}-{part.stop}")


def read(raw_dir: Union[str, Path], exclude: tuple = DEFAULT_EXCLUDE) -> Source:
    """The recordings of ``raw_dir`` (any folder holding ``Protocol/subject1xx.dat``, searched recursively).

    Raises:
        FileNotFoundError: no ``subject1xx.dat`` under a ``Protocol`` folder.
    """
    files = [p for p in raw_files(raw_dir, "**/subject1*.dat", _EXPECTED) if p.parent.name == "Protocol"]
    if not files:
        raise FileNotFoundError(f"no Protocol/subject1xx.dat under {raw_dir} (expected {_EXPECTED})")
    chosen = []
    for p in files:
        m = re.fullmatch(r"subject(\d+)\.dat", p.name)
        if m and int(m.group(1)) not in set(exclude):
            chosen.append((p, int(m.group(1))))
    if not chosen:
        raise FileNotFoundError(f"{raw_dir}: every PAMAP2 subject file found is excluded ({list(exclude)})")

    def recordings() -> Iterator[Recording]:
        for path, subject in chosen:
            yield from _read_file(path, subject)

    return Source(LABEL_NAMES, recordings())
