"""Write continuous recordings as shard folders of windows (``flowfm shard``), streaming.

Output: ``out/shard_00000/``, ``out/shard_00001/``, ... each the standard folder layout
(:func:`~flowfm.data.folder.save_folder`): ``X.npy`` ``(n, L, C)`` float32 channels-last in g, ``pid.npy`` (the
recording's file stem for every window), ``meta.json`` (fs 30, layout). Every shard but the last holds exactly
``windows_per_shard`` windows; windows run in recording order and a shard may span two recordings.

Memory is bounded by one shard buffer (``windows_per_shard * C * L * 4`` bytes, 72 MB for the default 20,000
windows of 3 x 300) plus one block of each stage of the stream (:mod:`flowfm.data.recording`). Each shard is
written atomically (a temp folder renamed into place), so an interrupted run leaves only complete shards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from .folder import save_folder
from .recording import RECORDING_SUFFIXES, inspect_recording, recording_unit, recording_windows
from .units import canonical_unit
from .windows import WindowDataset

__all__ = ["write_shards", "ShardReport", "WINDOWS_PER_SHARD"]

WINDOWS_PER_SHARD = 20_000


@dataclass
class ShardReport:
    """What :func:`write_shards` wrote: the shard folders, the window count, recordings too short for a window."""

    shards: list[Path] = field(default_factory=list)
    n_windows: int = 0
    skipped: list[Path] = field(default_factory=list)


class _ShardBuffer:
    """Up to ``capacity`` windows and their pids; :meth:`flush` writes them as the next shard folder."""

    def __init__(self, out: Path, capacity: int, report: ShardReport):
        self.out, self.capacity, self.report = out, capacity, report
        self.x: Optional[np.ndarray] = None
        self.pids: list[tuple[str, int]] = []  # (pid, run length)
        self.count = 0

    def add(self, windows: np.ndarray, pid: str) -> None:
        if self.x is None:
            self.x = np.empty((self.capacity, *windows.shape[1:]), dtype=np.float32)
        start = 0
        while start < windows.shape[0]:
            take = min(self.capacity - self.count, windows.shape[0] - start)
            self.x[self.count:self.count + take] = windows[start:start + take]
            self.pids.append((pid, take))
            self.count += take
            start += take
            if self.count == self.capacity:
                self.flush()

    def flush(self) -> None:
        if self.count == 0:
            return
        pid = np.repeat(np.array([p for p, _ in self.pids]), [k for _, k in self.pids])
        path = self.out / f"shard_{len(self.report.shards):05d}"
        save_folder(WindowDataset(x=self.x[:self.count], pid=pid, fs=30.0), path, overwrite=False)
        self.report.shards.append(path)
        self.report.n_windows += self.count
        self.pids, self.count = [], 0


def write_shards(recordings: Iterable[Any], fs: float, out: Any, windows_per_shard: int = WINDOWS_PER_SHARD, *,
                 window_s: float = 10.0, hop_s: float = 5.0, block_rows: Optional[int] = None,
                 unit: Optional[str] = None) -> ShardReport:
    """Cut continuous ``(T, C)`` recordings in g at ``fs`` Hz (``.npy`` / ``.csv``) into 30 Hz windows of
    ``window_s`` s every ``hop_s`` s and write them as shard folders under ``out``.

    ``unit``: the recordings' unit. None: each must look like g by magnitude; ``"g"``: used as is; ``"m/s2"`` /
    ``"mg"``: checked to look like that, then divided by 9.80665 / 1000 (:func:`~flowfm.data.recording.recording_unit`,
    before anything is written).

    A recording shorter than one window is skipped (listed in the report). The windows equal
    ``make_windows(resample_to(signal, fs, 30), 30)`` of each recording.

    Raises:
        FileExistsError: ``out`` already holds ``shard_*`` entries (a second run would mix two corpora).
        FileNotFoundError / ValueError: a missing or unreadable recording (named), NaN/inf samples (row named),
            recordings with different channel counts; :class:`~flowfm.data.units.UnitError` for a recording whose
            magnitude contradicts ``unit`` (names the file and the ``--unit`` flag).
    """
    out = Path(out)
    if windows_per_shard < 1:
        raise ValueError(f"windows_per_shard must be >= 1, got {windows_per_shard}")
    recordings = [Path(r) for r in recordings]
    if not recordings:
        raise ValueError("no recordings given")
    for r in recordings:  # cheap checks before any work
        if not r.is_file():
            raise FileNotFoundError(f"recording {r} does not exist")
        if r.suffix.lower() not in RECORDING_SUFFIXES:
            raise ValueError(f"{r}: a recording must be a .npy or .csv file of shape (T, C) in g")
    if out.exists() and any(out.glob("shard_*")):
        raise FileExistsError(f"{out} already holds shard folders; write to an empty or new folder")
    unit = canonical_unit(unit)
    per_g = {r: recording_unit(r, unit) for r in recordings}  # every file checked before any shard is written
    out.mkdir(parents=True, exist_ok=True)
    report = ShardReport()
    buffer = _ShardBuffer(out, windows_per_shard, report)
    kwargs = {} if block_rows is None else {"block_rows": block_rows}
    first: Optional[tuple[Path, int]] = None
    for r in recordings:
        info = inspect_recording(r, **kwargs)
        if first is None:
            first = (r, info.n_channels)
        elif info.n_channels != first[1]:
            raise ValueError(f"{r} has {info.n_channels} channels but {first[0]} has {first[1]}: the shards of one "
                             "corpus must agree")
        n_before = report.n_windows + buffer.count
        for windows in recording_windows(r, fs, window_s=window_s, hop_s=hop_s, info=info, **kwargs):
            buffer.add(windows if per_g[r] == 1.0 else windows / np.float32(per_g[r]), r.stem)
        if report.n_windows + buffer.count == n_before:
            report.skipped.append(r)
    buffer.flush()
    return report
