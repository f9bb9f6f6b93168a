"""RealWorld (HAR) 2016 -> standard windows (forearm, 8 activities).

Source: Sztyler & Stuckenschmidt, "On-body localization of wearable devices: an investigation of
position-aware activity recognition", PerCom 2016; https://www.uni-mannheim.de/dws/research/projects/
activity-recognition/dataset/dataset-realworld/ (``realworld2016_dataset/proband{N}/data/acc_{activity}_csv.zip``).

Raw format: per subject (proband 1-15) and activity one zip holding one CSV per body position,
``acc_{activity}_{position}.csv`` with the header ``id,attr_time,attr_x,attr_y,attr_z`` (``attr_time`` in ms),
about 50 Hz, acceleration in m/s^2 (divided by 9.80665; the magnitude check refuses g data). Activities
recorded in several sessions come as ``acc_{activity}_{k}_{position}.csv`` files, or as an outer zip of
``acc_{activity}_{k}_csv.zip`` zips; both are read, each session as its own recording.

Choices (as SSL-Wearables): position **forearm**; classes climbingdown, climbingup, jumping, lying, running,
sitting, standing, walking (codes 0-7, every window of a session carries the session's activity); all 15
subjects (id = N of ``proband{N}``, int); the nominal 50 Hz is used (the phones' timestamps jitter), and a
timestamp jump of more than 1 s cuts a session. A zip without a forearm CSV is skipped with a warning (some
sessions in the public release lack positions); a zip of an unknown activity is an error.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .labelled_recording import Recording, Source, raw_files, split_at_time_gaps, to_g

NAME = "realworld"
DESCRIPTION = "RealWorld HAR 2016 proband*/data/acc_*_csv.zip, forearm, ~50 Hz m/s^2, 8 activities"
FS = 50.0
POSITION = "forearm"
LABEL_NAMES = ("climbingdown", "climbingup", "jumping", "lying", "running", "sitting", "standing", "walking")
HEADER = ("id", "attr_time", "attr_x", "attr_y", "attr_z")
_EXPECTED = ("RealWorld 2016 proband<N>/data/acc_<activity>_csv.zip holding acc_<activity>_<position>.csv with "
             "columns id,attr_time,attr_x,attr_y,attr_z")


#: limits on what a zip may make us read: nesting depth, one member's size, and its compression ratio (a
#: real CSV compresses ~3-10x; a zip bomb 1000x)
MAX_ZIP_DEPTH, MAX_MEMBER_BYTES, MAX_COMPRESSION_RATIO = 3, 1 << 30, 100


def _read_csv(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    text = data.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise ValueError(f"{source}: empty file (expected {_EXPECTED})")
    header = [h.strip() for h in next(csv.reader([first]))]
    missing = [c for c in HEADER[1:] if c not in header]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing} in header {header}; expected {list(HEADER)}")
    cols = [header.index(c) for c in HEADER[1:]]
    try:  # numpy parses the body in C: memory ~ the table, not Python lists of floats
        table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, usecols=cols, ndmin=2, dtype=np.float64)
    except ValueError:
        raise ValueError(f"{source}: a row has missing or non-numeric attr_time/attr_x/attr_y/attr_z") from None
    if not len(table):
        raise ValueError(f"{source}: header only, no samples (expected {_EXPECTED})")
    steps = np.diff(table[:, 0])
    if len(steps) and np.count_nonzero(steps > 0) < len(steps) / 2:
        raise ValueError(f"{source}: the clock (attr_time) does not increase: {np.count_nonzero(steps <= 0)} of "
                         f"{len(steps)} steps are <= 0; expected milliseconds rising at about {FS:g} Hz")
    return table[:, 0], table[:, 1:]


def _member_bytes(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    info = zf.getinfo(name)
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > MAX_MEMBER_BYTES or ratio > MAX_COMPRESSION_RATIO:
        raise ValueError(f"{where}:{name} would expand to {info.file_size:,} bytes ({ratio:.0f}x its compressed "
                         f"size); expected a CSV under {MAX_MEMBER_BYTES:,} bytes compressed at most "
                         f"{MAX_COMPRESSION_RATIO}x (not a zip bomb)")
    return zf.read(name)


def _forearm_members(zf: zipfile.ZipFile, activity: str, where: str, depth: int = 0
                     ) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every forearm CSV in ``zf``, descending into nested zips (at most MAX_ZIP_DEPTH deep)."""
    pattern = re.compile(rf"acc_{activity}(?:_\d+)?_{POSITION}\.csv", re.IGNORECASE)
    for name in sorted(zf.namelist()):
        base = name.rsplit("/", 1)[-1]
        if pattern.fullmatch(base):
            yield f"{where}:{name}", _member_bytes(zf, name, where)
        elif base.lower().endswith(".zip"):
            if depth + 1 > MAX_ZIP_DEPTH:
                raise ValueError(f"{where}:{name} is nested {depth + 2} zips deep; expected at most "
                                 f"{MAX_ZIP_DEPTH + 1} (the release nests sessions one level)")
            try:
                inner = zipfile.ZipFile(io.BytesIO(_member_bytes(zf, name, where)))
            except zipfile.BadZipFile as e:
                raise ValueError(f"{where}:{name}: not a readable zip ({e})") from None
            with inner:
                yield from _forearm_members(inner, activity, f"{where}:{name}", depth + 1)


def _read_zip(path: Path, subject: int) -> Iterator[Recording]:
    m = re.fullmatch(r"acc_([a-z]+)_csv\.zip", path.name, re.IGNORECASE)
    activity = m.group(1).lower() if m else ""
    if activity not in LABEL_NAMES:
        raise ValueError(f"{path}: unknown activity {activity!r}; expected acc_<activity>_csv.zip with activity in "
                         f"{list(LABEL_NAMES)}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a readable zip ({e}); expected {_EXPECTED}") from None
    with zf:
        members = list(_forearm_members(zf, activity, str(path)))
    if not members:
        warnings.warn(f"{path}: no acc_{activity}_{POSITION}.csv inside; skipped", RuntimeWarning, stacklevel=3)
        return
    code = LABEL_NAMES.index(activity)
    for source, data in members:
        t_ms, xyz = _read_csv(data, source)
        acc = to_g(xyz, "m/s^2", source)
        for part in split_at_time_gaps(t_ms, max_gap=1000.0):
            n = part.stop - part.start
            yield Recording(acc[part], np.full(n, code), FS, subject, f"{source} rows {part.start + 1}-{part.stop}")


def read(raw_dir: Union[str, Path]) -> Source:
    """The recordings of ``raw_dir`` (any folder holding ``proband<N>/data/acc_<activity>_csv.zip``)."""
    found = []
    for p in raw_files(raw_dir, "**/acc_*_csv.zip", _EXPECTED):
        m = next((re.fullmatch(r"proband(\d+)", part) for part in reversed(p.parts[:-1])
                  if re.fullmatch(r"proband(\d+)", part)), None)
        if m is None:
            raise ValueError(f"{p}: not inside a proband<N> folder, so the subject is unknown (expected {_EXPECTED})")
        found.append((p, int(m.group(1))))

    def recordings() -> Iterator[Recording]:
        for path, subject in found:
            yield from _read_zip(path, subject)

    return Source(LABEL_NAMES, recordings())
