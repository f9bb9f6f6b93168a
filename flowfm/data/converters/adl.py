"""ADL / HMP (Dataset for ADL Recognition with Wrist-worn Accelerometer) -> standard windows (wrist, 14 ADLs).

Source: Bruno, Mastrogiovanni, Sgorbissa, Vernazza & Zaccaria, "Analysis of human behavior recognition
algorithms based on acceleration data", ICRA 2013; https://archive.ics.uci.edu/dataset/283 (``HMP_Dataset/
<Activity>/Accelerometer-YYYY-MM-DD-HH-MM-SS-<activity>-<subject>.txt``).

Raw format: one file per trial, one sample per line, three whitespace-separated integer counts ``x y z`` in
0..63, 32 Hz, a tri-axial accelerometer on the right wrist (x towards the hand, y left, z out of the palm).
Conversion as documented by the dataset: ``a [g] = -1.5 + (count / 63) * 3`` (range -1.5..+1.5 g); values outside
0..63 or non-integers are an error (a file already in g or m/s^2), and the resting magnitude is checked.

Choices: classes brush_teeth, climb_stairs, comb_hair, descend_stairs, drink_glass, eat_meat, eat_soup,
getup_bed, liedown_bed, pour_water, sitdown_chair, standup_chair, use_telephone, walk (codes 0-13), from the
activity in the file name (an unknown activity is an error); subject id = the last name field (``f1``, ``m3``,
...: str). As SSL-Wearables, the ``*_MODEL`` folders are read too, but a file whose name was already read from
another folder is skipped (no duplicate trials). Trials shorter than 10 s yield no window (many of the short
transitions such as getup_bed are 3-8 s long).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .labelled_recording import Recording, Source, raw_files, to_g

NAME = "adl"
DESCRIPTION = "ADL/HMP Accelerometer-*-<activity>-<subject>.txt, wrist, 32 Hz counts 0..63 -> g, 14 activities"
FS = 32.0
COUNT_MAX = 63
LABEL_NAMES = ("brush_teeth", "climb_stairs", "comb_hair", "descend_stairs", "drink_glass", "eat_meat", "eat_soup",
               "getup_bed", "liedown_bed", "pour_water", "sitdown_chair", "standup_chair", "use_telephone", "walk")
_NAME_RE = re.compile(r"Accelerometer-\d{4}(?:-\d{1,2}){5}-([a-z_]+)-([a-z]+\d+)\.txt", re.IGNORECASE)
_EXPECTED = ("HMP_Dataset/<Activity>/Accelerometer-YYYY-MM-DD-HH-MM-SS-<activity>-<subject>.txt with lines of "
             "three integer counts 0..63")


def counts_to_g(counts: np.ndarray) -> np.ndarray:
    """HMP counts (0..63) to g: ``-1.5 + counts / 63 * 3``."""
    return -1.5 + np.asarray(counts, dtype=np.float64) / COUNT_MAX * 3.0


def _read_file(path: Path, activity: str, subject: str) -> Recording:
    if not path.read_text(encoding="ascii", errors="replace").strip():
        raise ValueError(f"{path}: empty file (expected {_EXPECTED})")
    try:
        counts = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: not a table of whitespace-separated numbers ({_EXPECTED}): {e}") from None
    if counts.shape[1] != 3:
        raise ValueError(f"{path}: {counts.shape[1]} columns, expected 3 (x y z counts)")
    if not (np.all(counts == np.round(counts)) and counts.min() >= 0 and counts.max() <= COUNT_MAX):
        raise ValueError(f"{path}: values must be integer counts in 0..{COUNT_MAX} (found {counts.min():g}.."
                         f"{counts.max():g}); the file is not in the HMP count format (already converted to g or "
                         "m/s^2?)")
    acc = to_g(counts_to_g(counts), "g", str(path))
    return Recording(acc, np.full(len(acc), LABEL_NAMES.index(activity)), FS, subject, str(path))


def read(raw_dir: Union[str, Path]) -> Source:
    """The recordings of ``raw_dir`` (any folder holding ``Accelerometer-*.txt`` trials, searched recursively)."""
    chosen: dict[str, tuple[Path, str, str]] = {}
    # main folders before *_MODEL folders, so a duplicated trial is taken from the main folder
    for path in sorted(raw_files(raw_dir, "**/Accelerometer-*.txt", _EXPECTED),
                       key=lambda p: (p.parent.name.upper().endswith("_MODEL"), str(p))):
        m = _NAME_RE.fullmatch(path.name)
        if m is None:
            raise ValueError(f"{path}: file name does not follow {_EXPECTED}")
        activity, subject = m.group(1).lower(), m.group(2).lower()
        if activity not in LABEL_NAMES:
            raise ValueError(f"{path}: unknown activity {activity!r}; expected one of {list(LABEL_NAMES)}")
        chosen.setdefault(path.name, (path, activity, subject))

    def recordings() -> Iterator[Recording]:
        for path, activity, subject in chosen.values():
            yield _read_file(path, activity, subject)

    return Source(LABEL_NAMES, recordings())
