"""Continuous recordings, streamed: read in blocks, resample to 30 Hz, cut into windows, with bounded memory.

A recording is one file holding ``(T, C)`` samples in g at a rate the caller states (files carry no rate):

    ``.npy``   a plain ``(T, C)`` array (read block by block from the file, never loaded or memory-mapped whole)
    ``.csv``   ``T`` rows of ``C`` comma-separated numbers; a first line that is not numeric is a header

The streaming result is *exactly* the one-shot pipeline ``make_windows(resample_to(signal, fs, 30), 30)``:
``resample_poly`` (``padtype="line"``) extends the signal beyond both ends with the line through its first and last
samples, and each output sample is a finite filter over the input samples within ``10 * max(up, down) / up``
input samples of it. :func:`resample_stream` therefore filters overlapping segments
``[a - m, b + m)`` (``m`` above that reach, ``a``, ``b``, ``m`` multiples of ``down`` so that output indices stay
integers), pads segments at the recording's ends with that same line, and keeps the outputs of ``[a, b)`` only:
every kept output sees the very inputs the whole-signal call sees. Memory is ``O(block rows * C)``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from .resample import make_windows, rate_ratio, window_params
from .units import CHECK_ROWS, canonical_unit, check_unit, median_magnitude, sample_indices

__all__ = ["RECORDING_SUFFIXES", "RecordingInfo", "inspect_recording", "iter_recording", "resample_stream",
           "window_stream", "recording_windows", "resample_recording", "read_npy_header", "recording_unit"]

RECORDING_SUFFIXES = (".npy", ".csv")
#: Rows read (and resampled) per block: 2**18 rows of 3 float64 channels is 6 MiB.
BLOCK_ROWS = 2**18


def read_npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data_offset)`` of a ``.npy`` file, from its header alone.

    Raises ValueError naming the file when it is not a ``.npy`` file, holds pickled objects, or is shorter than its
    header says (e.g. a copy that was cut off)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
    except (ValueError, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npy file: {e}") from None
    if dtype.hasobject:
        raise ValueError(f"{path} holds pickled Python objects (dtype {dtype}); expected plain numbers in g")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise ValueError(f"{path} is truncated: its header announces shape {tuple(shape)} {dtype} "
                         f"({need} bytes with the header) but the file has {size} bytes")
    return tuple(int(s) for s in shape), bool(fortran), dtype, offset


@dataclass(frozen=True)
class RecordingInfo:
    """What the stream needs before it starts: ``n_rows`` T, ``n_channels`` C, the ``first`` and ``last`` rows
    (float64 ``(C,)``, they define the line the resampler extends the signal with)."""

    path: Path
    n_rows: int
    n_channels: int
    first: np.ndarray
    last: np.ndarray


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in RECORDING_SUFFIXES:
        raise ValueError(f"{path}: a recording must be a .npy or .csv file of shape (T, C) in g, got '{suffix}'")
    return suffix


def _npy_shape(path: Path) -> tuple[tuple[int, int], bool, np.dtype, int]:
    shape, fortran, dtype, offset = read_npy_header(path)
    if len(shape) != 2:
        hint = " (that looks like windows: pass the folder holding X.npy instead)" if len(shape) == 3 else ""
        raise ValueError(f"{path}: a recording must have shape (T, C), got shape {shape}{hint}")
    if dtype.kind not in "fiu":
        raise TypeError(f"{path}: a recording must hold real numbers (acceleration in g), got dtype {dtype}")
    if shape[0] < shape[1] and shape[0] <= 9:
        raise ValueError(f"{path} has shape {shape}: that looks like (C, T); save the recording as (T, C)")
    return shape, fortran, dtype, offset


def _iter_npy(path: Path, block_rows: int) -> Iterator[np.ndarray]:
    (t, c), fortran, dtype, offset = _npy_shape(path)
    if fortran:  # column-major: rows are not contiguous on disk, read through a memmap instead
        arr = np.load(path, mmap_mode="r")
        for start in range(0, t, block_rows):
            yield np.array(arr[start:start + block_rows], dtype=np.float64)
        return
    row_bytes = c * dtype.itemsize
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, t, block_rows):
            rows = min(block_rows, t - start)
            buf = f.read(rows * row_bytes)
            yield np.frombuffer(buf, dtype=dtype).reshape(rows, c).astype(np.float64)


def _is_numeric_line(line: str) -> bool:
    try:
        [float(v) for v in line.split(",")]
    except ValueError:
        return False
    return True


def _iter_csv(path: Path, block_rows: int) -> Iterator[np.ndarray]:
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
        line_no = 1 if _is_numeric_line(first) else 2  # 1-based number of the first data line
        lines = itertools.chain([first], f) if line_no == 1 else f
        n_channels = None
        while True:
            block = list(itertools.islice(lines, block_rows))
            if not block:
                return
            try:
                arr = np.loadtxt(block, delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError as e:
                raise ValueError(f"{path}: lines {line_no}-{line_no + len(block) - 1} are not all rows of "
                                 f"comma-separated numbers: {e}") from None
            if arr.shape[0]:
                if n_channels is None:
                    n_channels = arr.shape[1]
                elif arr.shape[1] != n_channels:
                    raise ValueError(f"{path}: lines {line_no}-{line_no + len(block) - 1} have {arr.shape[1]} "
                                     f"columns, earlier lines {n_channels}")
                yield arr
            line_no += len(block)


def iter_recording(path: Any, block_rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """The samples of a recording, ``(rows, C)`` float64 blocks of at most ``block_rows`` rows, in order.

    Raises ValueError naming the file (and the row) on a bad suffix, shape, parse error or a NaN/inf sample."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recording {path} does not exist")
    reader = _iter_npy if _suffix(path) == ".npy" else _iter_csv
    row = 0
    for block in reader(path, block_rows):
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(np.argwhere(~finite)[0, 0])
            raise ValueError(f"{path}: sample row {row + bad} holds NaN/inf; fill or cut gaps before windowing")
        row += block.shape[0]
        yield block


def inspect_recording(path: Any, block_rows: int = BLOCK_ROWS) -> RecordingInfo:
    """T, C and the first/last rows of a recording: from the header for ``.npy`` (two rows read), by one parsing
    pass for ``.csv``. Raises ValueError for an empty recording or one with no channels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recording {path} does not exist")
    if _suffix(path) == ".npy":
        (t, c), _, _, _ = _npy_shape(path)
        first = last = None
        if t and c:
            arr = np.load(path, mmap_mode="r")  # touches two pages
            first, last = np.array(arr[0], dtype=np.float64), np.array(arr[-1], dtype=np.float64)
            del arr
            for row, values in ((0, first), (t - 1, last)):
                if not np.isfinite(values).all():
                    raise ValueError(f"{path}: sample row {row} holds NaN/inf; fill or cut gaps before windowing")
    else:
        t, c, first, last = 0, 0, None, None
        for block in iter_recording(path, block_rows):
            if first is None:
                first, c = block[0].copy(), block.shape[1]
            last, t = block[-1].copy(), t + block.shape[0]
    if t == 0 or c == 0:
        raise ValueError(f"{path} holds no samples (T = {t}, C = {c}); expected (T, C) with T, C >= 1")
    return RecordingInfo(path=path, n_rows=t, n_channels=c, first=first, last=last)


def recording_unit(path: Any, unit: Optional[str] = None, max_rows: int = CHECK_ROWS) -> float:
    """Units per g of a recording (divide its samples by it), after :func:`~flowfm.data.units.check_unit` on a
    bounded read: ``max_rows`` evenly spaced rows of a ``.npy`` (memory-mapped), the first ``max_rows`` rows of a
    ``.csv``. Raises :class:`~flowfm.data.units.UnitError` naming the file when the magnitude contradicts ``unit``
    (None: g expected; ``"g"`` forces acceptance)."""
    path = Path(path)
    if canonical_unit(unit) == "g":
        return 1.0
    if _suffix(path) == ".npy":
        (t, _), _, _, _ = _npy_shape(path)
        arr = np.load(path, mmap_mode="r")
        rows = np.array(arr[sample_indices(t, max_rows)], dtype=np.float64)
        del arr
    else:
        rows = next(iter(iter_recording(path, max_rows)), np.zeros((0, 1)))
    return check_unit(median_magnitude(rows), str(path), unit)


def _line_rows(info: RecordingInfo, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (all < 0 or all >= T) of the line through the first and last samples, ``(len, C)``: the
    values ``resample_poly(padtype="line")`` extends the signal with."""
    slope = (info.last - info.first) / (info.n_rows - 1) if info.n_rows > 1 else np.zeros_like(info.first)
    if index[0] < 0:
        return info.first + index[:, None] * slope
    return info.last + (index - (info.n_rows - 1))[:, None] * slope


def resample_stream(blocks: Iterable[np.ndarray], info: RecordingInfo, fs_in: float, fs_out: float = 30.0, *,
                    core_rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Resample a block stream to ``fs_out``: the concatenated output equals ``resample_to(whole, fs_in, fs_out)``.

    Args:
        blocks: ``(rows, C)`` float blocks of the recording described by ``info``, in order.
        core_rows: input rows whose outputs one filter call produces (rounded to a multiple of ``down``).

    Yields:
        ``(rows_out, C)`` float64 blocks; ``ceil(T * up / down)`` rows in all.
    """
    up, down = rate_ratio(fs_in, fs_out)
    if up == down:
        yield from blocks
        return
    from scipy.signal import resample_poly  # lazy: scipy.signal takes about 1 s to import

    t = info.n_rows
    reach = 10 * max(up, down) / up  # input samples each side that an output depends on (resample_poly's filter)
    margin = math.ceil((reach + 2) / down) * down
    core = max(down, core_rows // down * down)
    n_out = -(-t * up // down)
    source = iter(blocks)
    buf, buf_start = np.zeros((0, info.n_channels)), 0  # buf[i] is row buf_start + i
    a = 0
    while a < t:
        b = min(a + core, t)
        lo, hi = a - margin, b + margin
        while buf_start + buf.shape[0] < min(hi, t):
            try:
                buf = np.concatenate([buf, next(source)])
            except StopIteration:
                raise ValueError(f"{info.path}: the stream ended after {buf_start + buf.shape[0]} of {t} rows") \
                    from None
        parts = []
        if lo < 0:
            parts.append(_line_rows(info, np.arange(lo, 0)))
        parts.append(buf[max(lo, 0) - buf_start:min(hi, t) - buf_start])
        if hi > t:
            parts.append(_line_rows(info, np.arange(t, hi)))
        y = resample_poly(np.concatenate(parts), up, down, axis=0, padtype="constant")
        j0 = lo * up // down  # exact: lo is a multiple of down
        stop = b * up // down if b < t else n_out
        yield y[a * up // down - j0:stop - j0]
        a = b
        keep = max(a - margin, 0) - buf_start
        buf, buf_start = buf[keep:], buf_start + keep


def window_stream(blocks: Iterable[np.ndarray], fs: float, window_s: float = 10.0,
                  hop_s: float = 5.0) -> Iterator[np.ndarray]:
    """Cut a ``(rows, C)`` block stream at ``fs`` into ``(n, C, L)`` float32 windows, exactly as
    :func:`~flowfm.data.resample.make_windows` cuts the concatenated signal (window ``k`` starts at ``k * hop``)."""
    length, hop = window_params(fs, window_s, hop_s)
    buf = None
    for block in blocks:
        buf = block if buf is None or buf.shape[0] == 0 else np.concatenate([buf, block])
        if buf.shape[0] >= length:
            x, _ = make_windows(buf, fs, window_s=window_s, hop_s=hop_s)
            yield x
            buf = buf[x.shape[0] * hop:]


def recording_windows(path: Any, fs: float, *, fs_out: float = 30.0, window_s: float = 10.0, hop_s: float = 5.0,
                      info: RecordingInfo | None = None, block_rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """The ``(n, C, L)`` float32 windows of a recording at ``fs`` Hz, resampled to ``fs_out``, block by block."""
    info = info or inspect_recording(path, block_rows)
    signal = resample_stream(iter_recording(info.path, block_rows), info, fs, fs_out, core_rows=block_rows)
    return window_stream(signal, fs_out, window_s, hop_s)


def resample_recording(path: Any, fs: float, fs_out: float = 30.0, *, info: RecordingInfo | None = None,
                       block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """The whole recording resampled to ``fs_out``, ``(T_out, C)`` float32, built block by block (the only large
    allocation is the result: ``4 * C * fs_out`` bytes per second of recording, 360 B/s for 3 channels at 30 Hz)."""
    info = info or inspect_recording(path, block_rows)
    up, down = rate_ratio(fs, fs_out)
    n_out = info.n_rows if up == down else -(-info.n_rows * up // down)
    out = np.empty((n_out, info.n_channels), dtype=np.float32)
    row = 0
    for block in resample_stream(iter_recording(info.path, block_rows), info, fs, fs_out, core_rows=block_rows):
        out[row:row + block.shape[0]] = block
        row += block.shape[0]
    assert row == n_out, (row, n_out)
    return out
