"""OPPORTUNITY Activity Recognition -> standard windows (right wrist, 4 locomotion classes).

Source: Roggen et al., "Collecting complex activity datasets in highly rich networked sensor environments",
INSS 2010; https://archive.ics.uci.edu/dataset/226 (``OpportunityUCIDataset/dataset/S1-ADL1.dat`` ..
``S4-ADL5.dat``, ``S1-Drill.dat`` .. ``S4-Drill.dat``, ``column_names.txt``).

Raw format: one space-separated text file per subject and run, 250 columns, 30 Hz (column 1 MILLISEC),
``NaN`` for missing values. Used here (1-based numbers of ``column_names.txt``):

* **columns 23, 24, 25 = "Accelerometer RWR accX/accY/accZ"**, the body-worn accelerometer on the right wrist,
  in milli-g (divided by 1000; the magnitude check refuses other units). This is SSL-Wearables' choice; the
  Xsens IMU on the right lower arm (RLA, columns 64-66) sits higher on the forearm;
* **column 244 = "Locomotion"**: 1 Stand, 2 Walk, 4 Sit, 5 Lie -> codes 0-3 (stand, walk, sit, lie);
  0 = null class -> label -1 (windows dominated by it are dropped, or kept unlabelled with ``keep_unlabelled``).

If ``column_names.txt`` is in ``raw_dir``, these column numbers are checked against it (a mismatch is an error);
otherwise the numbers above are used as documented by the dataset.

Choices: all runs (ADL1-5 and Drill) of all 4 subjects, subject id 1-4 (int) from the file name; NaN runs of the
wrist sensor (Bluetooth dropouts) up to 1 s are interpolated, longer ones cut the recording, as do MILLISEC jumps
of more than 1 s (:mod:`.labelled_recording`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .labelled_recording import (Recording, Source, label_codes, raw_files, read_numeric_table,
                                 split_at_time_gaps, to_g)

NAME = "opportunity"
DESCRIPTION = "Opportunity dataset/S*-ADL*.dat + Drill, RWR wrist acc (cols 23-25), 30 Hz milli-g, locomotion"
FS = 30.0
N_COLUMNS = 250
TIME_COL = 0
WRIST_COLS = (22, 23, 24)  # 0-based: columns 23-25
LOCOMOTION_COL = 243  # 0-based: column 244
EXPECTED_NAMES = {23: "Accelerometer RWR accX", 24: "Accelerometer RWR accY", 25: "Accelerometer RWR accZ",
                  244: "Locomotion"}
LOCOMOTION_TO_CODE = {1: 0, 2: 1, 4: 2, 5: 3}
LABEL_NAMES = ("stand", "walk", "sit", "lie")
_EXPECTED = "Opportunity dataset/S<subject>-ADL<run>.dat or S<subject>-Drill.dat: 250 space-separated columns"


def _check_column_names(path: Path) -> None:
    names: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"\s*Column:\s*(\d+)\s+([^;]+)", line)
        if m:
            names[int(m.group(1))] = m.group(2).strip()
    for col, name in EXPECTED_NAMES.items():
        if names.get(col) != name:
            raise ValueError(f"{path}: column {col} is {names.get(col)!r}, expected {name!r}; this converter reads "
                             "the right-wrist accelerometer from columns 23-25 and the locomotion label from 244")


def _read_file(path: Path, subject: int) -> Iterator[Recording]:
    table = read_numeric_table(path, N_COLUMNS, (TIME_COL, *WRIST_COLS, LOCOMOTION_COL), _EXPECTED)
    t, loco = table[:, 0], table[:, 4]
    known = np.isin(loco, [0, *LOCOMOTION_TO_CODE])
    if not known.all():
        raise ValueError(f"{path}: unknown locomotion label(s) {sorted(set(loco[~known].tolist()))[:5]} in column "
                         "244; expected 0 (null), 1 Stand, 2 Walk, 4 Sit, 5 Lie")
    acc = to_g(table[:, 1:4], "milli-g", f"{path} (Accelerometer RWR, columns 23-25)")
    codes = label_codes(loco, LOCOMOTION_TO_CODE)
    for part in split_at_time_gaps(t, max_gap=1000.0):
        yield Recording(acc[part], codes[part], FS, subject, f"{path} rows {part.start + 1}-{part.stop}")


def read(raw_dir: Union[str, Path]) -> Source:
    """The recordings of ``raw_dir`` (any folder holding ``S<n>-ADL<k>.dat`` / ``S<n>-Drill.dat``)."""
    files = [p for p in raw_files(raw_dir, "**/S*-*.dat", _EXPECTED)
             if re.fullmatch(r"S\d+-(ADL\d+|Drill)\.dat", p.name)]
    if not files:
        raise FileNotFoundError(f"no S<n>-ADL<k>.dat / S<n>-Drill.dat under {raw_dir} (expected {_EXPECTED})")
    for names in sorted(Path(raw_dir).glob("**/column_names.txt")):
        _check_column_names(names)

    def recordings() -> Iterator[Recording]:
        for path in files:
            yield from _read_file(path, int(re.match(r"S(\d+)", path.name).group(1)))

    return Source(LABEL_NAMES, recordings())
