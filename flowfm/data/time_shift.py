"""Time-shifted cuts: the same recording re-cut a few seconds earlier or later (an encoder view, docs/design.md §3).

The standard layout (docs/design.md §2) stores windows, not recordings, but its converters write the windows of a
recording
in time order with a hop of ``hop`` samples (10 s windows, 5 s hop: ``hop = L / 2``). Window j *continues* window i
when it starts ``hop`` samples later in the same recording; that is checked on the data itself, without metadata:

    x[j][:, :L - hop] == x[i][:, hop:]          (bitwise: both are slices of one resampled signal)

and only for j = i + 1 (and, when subject ids are given, the same subject). A shifted cut of window i by s samples,
``-hop <= s <= hop``, reads the samples at positions s .. s + L - 1 of the recording relative to the start of x[i]:

    position p < 0   -> x[pred(i)][:, p + hop]        (the predecessor starts hop samples earlier)
    0 <= p < L       -> x[i][:, p]
    p >= L           -> x[succ(i)][:, p - hop]        (the successor starts hop samples later)

A window without a predecessor (successor) cannot move earlier (later): its shift is clamped to 0 on that side, so
the first and last windows of every recording are cut inside the recording only.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["find_neighbours", "shifted_cuts", "TimeShiftedCuts"]

_CHUNK = 4096


def find_neighbours(x, hop: int, pid: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Predecessor and successor of every window of x (N, C, L) (numpy, memmap or corpus) at hop ``hop``.

    Returns ``(pred, succ)``, both (N,) int64: ``succ[i] = i + 1`` when window i + 1 continues window i (module
    docstring), else -1; ``pred`` is the inverse map. Windows are read chunk-wise, so a memmap is never loaded whole.
    """
    n, length = len(x), int(x.shape[-1])
    if not 0 < hop < length:
        raise ValueError(f"hop must be in (0, L={length}) samples, got {hop}")
    if pid is not None and len(pid) != n:
        raise ValueError(f"pid has {len(pid)} entries for {n} windows")
    succ = np.full(n, -1, dtype=np.int64)
    prev_tail = None
    for start in range(0, n, _CHUNK):
        chunk = np.asarray(x[np.arange(start, min(n, start + _CHUNK))], dtype=np.float32)
        heads, tails = chunk[:, :, :length - hop], chunk[:, :, hop:]
        same = np.all(heads[1:] == tails[:-1], axis=(1, 2))
        succ[start:start + len(chunk) - 1][same] = np.arange(start + 1, start + len(chunk))[same]
        if prev_tail is not None and np.array_equal(heads[0], prev_tail):
            succ[start - 1] = start
        prev_tail = tails[-1]
    if pid is not None:
        pid = np.asarray(pid)
        linked = np.flatnonzero(succ >= 0)
        succ[linked[pid[linked] != pid[linked + 1]]] = -1
    pred = np.full(n, -1, dtype=np.int64)
    linked = np.flatnonzero(succ >= 0)
    pred[succ[linked]] = linked
    return pred, succ


def shifted_cuts(x, idx: np.ndarray, shifts: np.ndarray, pred: np.ndarray, succ: np.ndarray,
                 hop: int, base: Optional[np.ndarray] = None) -> np.ndarray:
    """Windows idx (B,) of x re-cut by ``shifts`` (B,) samples: (B, C, L) float32 (module docstring).

    Shifts beyond what the neighbours allow are clamped (to 0 on a side without a neighbour, to +-hop otherwise).
    ``base``: the windows x[idx] when the caller has already read them (only the neighbours are read then).
    """
    idx = np.asarray(idx, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64)
    shifts = np.clip(shifts, np.where(pred[idx] >= 0, -hop, 0), np.where(succ[idx] >= 0, hop, 0))
    base = np.asarray(x[idx] if base is None else base, dtype=np.float32)
    out = base.copy()
    length = base.shape[-1]
    later, earlier = np.flatnonzero(shifts > 0), np.flatnonzero(shifts < 0)
    after = np.asarray(x[succ[idx[later]]], dtype=np.float32) if len(later) else None
    before = np.asarray(x[pred[idx[earlier]]], dtype=np.float32) if len(earlier) else None
    for k, row in enumerate(later):
        s = int(shifts[row])
        out[row, :, :length - s] = base[row, :, s:]
        out[row, :, length - s:] = after[k, :, length - hop:length - hop + s]
    for k, row in enumerate(earlier):
        s = -int(shifts[row])
        out[row, :, s:] = base[row, :, :length - s]
        out[row, :, :s] = before[k, :, hop - s:hop]
    return out


class TimeShiftedCuts:
    """Draws the time-shifted encoder view of training batches of x (N, C, L).

    ``max_shift`` (samples) bounds |s|; s ~ U{-max_shift, ..., max_shift} per window, from a numpy generator the
    caller seeds (the trainer: from (seed, epoch, batch start), so the draws do not depend on the number of ranks
    and a resumed run repeats them). ``hop`` defaults to L // 2 (docs/design.md §2: 10 s windows, 5 s hop).
    """

    def __init__(self, x, max_shift: int, hop: Optional[int] = None, pid: Optional[np.ndarray] = None):
        length = int(x.shape[-1])
        self.x, self.hop = x, int(hop if hop is not None else length // 2)
        if max_shift < 1:
            raise ValueError(f"max_shift must be >= 1 sample, got {max_shift}")
        self.max_shift = min(int(max_shift), self.hop)
        self.pred, self.succ = find_neighbours(x, self.hop, pid)
        self.linked_fraction = float(np.mean((self.pred >= 0) | (self.succ >= 0))) if len(x) else 0.0
        if self.linked_fraction == 0.0:
            raise ValueError(
                f"the time-shifted encoder view found no consecutive windows overlapping by L - hop = "
                f"{length - self.hop} samples among {len(x)} windows; it needs windows cut from recordings in "
                f"time order with hop {self.hop} (docs/design.md §2), or choose --encoder-view augment / identical")

    def draw(self, idx: np.ndarray, rng: np.random.Generator, rows: slice = slice(None),
             base: Optional[np.ndarray] = None) -> np.ndarray:
        """The shifted cuts (b, C, L) float32 of windows idx[rows]: shifts are drawn for all of idx (B,), so a
        data-parallel rank cutting only its rows gets the single process's cuts; ``base`` = x[idx[rows]] if read."""
        shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=len(idx))
        return shifted_cuts(self.x, idx[rows], shifts[rows], self.pred, self.succ, self.hop, base)
