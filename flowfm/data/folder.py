"""Reading and writing the field's on-disk window layout (SSL-Wearables' processed datasets).

A dataset folder holds::

    X.npy      (N, L, C) float, channels-last, acceleration in g   (the field's default layout)
    Y.npy      (N,) labels, int or str                              (optional: absent for pretraining data)
    pid.npy    (N,) subject ids, int or str                         (required)
    meta.json  {"fs": 30.0, "label_names": {"0": "walking", ...}}   (optional; written by save_folder)

In memory everything is channels-first ``(N, C, L)`` (:class:`~flowfm.data.windows.WindowDataset`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .atomic import atomic_dir, check_replaceable
from .units import UNITS, canonical_unit, check_windows_unit
from .windows import WindowDataset, validate_windows

__all__ = ["load_folder", "save_folder", "check_subjectwise", "resolve_layout", "MAX_AUTO_CHANNELS"]

#: With ``layout="auto"`` an axis of at most this size (and the other axis larger) is the channel axis.
MAX_AUTO_CHANNELS = 9
_LAYOUTS = ("auto", "channels_last", "channels_first")


def resolve_layout(shape: tuple[int, ...], layout: str = "auto", name: str = "X.npy") -> str:
    """Decide whether a ``(N, a, b)`` array is ``"channels_last"`` (N, L, C) or ``"channels_first"`` (N, C, L).

    ``"auto"``: the axis of size <= :data:`MAX_AUTO_CHANNELS` is C when the other axis is larger; anything
    else (both small, both large) is ambiguous and raises ValueError asking for an explicit ``layout``.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if layout != "auto":
        return layout
    _, a, b = shape
    if b <= MAX_AUTO_CHANNELS < a:
        return "channels_last"
    if a <= MAX_AUTO_CHANNELS < b:
        return "channels_first"
    raise ValueError(
        f"{name} has shape {tuple(shape)}: cannot tell (N, L, C) from (N, C, L) (layout='auto' needs exactly one "
        f"of the last two axes to be <= {MAX_AUTO_CHANNELS} channels and the other longer). Pass "
        "layout='channels_last' (the field's default, N x L x C) or layout='channels_first'.")


def _load_npy(path: Path, what: str, *, mmap: bool = False, allow_pickle: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=allow_pickle)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise ValueError(
                f"{path} holds a pickled object array ({what}); pickles can run code, so they are not loaded by "
                "default. Re-save it as a plain array (e.g. np.save(p, np.asarray(y, dtype=str))), or pass "
                "allow_pickle=True if you trust the file.") from None
        raise ValueError(f"{path} is not a readable .npy file ({what}): {e}") from e


def _as_1d(arr: np.ndarray, n: int, fname: str, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise ValueError(f"{fname} must have shape (N,) = ({n},) ({what}), got shape {tuple(arr.shape)}")
    if arr.shape[0] != n:
        raise ValueError(f"{fname} has {arr.shape[0]} entries but X.npy has {n} windows: every window needs "
                         f"exactly one {what} (length mismatch)")
    if arr.dtype.kind == "S":
        arr = arr.astype(str)
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{fname} holds non-integer floats; {what} must be int or str")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iuUO":
        raise TypeError(f"{fname} must hold int or str {what}, got dtype {arr.dtype}")
    return arr


def read_meta(folder: Path) -> dict[str, Any]:
    """The optional ``meta.json`` of a window folder as a dict ({} when absent); malformed JSON is an error."""
    p = folder / "meta.json"
    if not p.exists():
        return {}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{p} must hold a JSON object, got {type(meta).__name__}")
    return meta


def load_folder(path: Any, layout: str = "auto", mmap: bool = True, require_labels: bool = False, *,
                allow_pickle: bool = False, unit: Optional[str] = None) -> WindowDataset:
    """Load a dataset folder (``X.npy``, optional ``Y.npy``, ``pid.npy``, optional ``meta.json``).

    Args:
        path: the folder.
        layout: ``"auto"`` (channels-last unless the shape says channels-first unambiguously, see
            :func:`resolve_layout`), ``"channels_last"`` (N, L, C) or ``"channels_first"`` (N, C, L).
        mmap: memory-map ``X.npy`` read-only (``np.load(mmap_mode="r")``). A float32 file then stays on disk:
            ``ds.x`` is a ``(N, C, L)`` view of the memmap (a transposed view for channels-last files); other
            float dtypes are converted to float32 in memory.
        require_labels: raise if ``Y.npy`` is missing.
        allow_pickle: allow object-dtype (pickled) ``Y.npy`` / ``pid.npy``. Off by default: pickles run code.
        unit: the unit of ``X.npy``. None (default): it must look like g by magnitude
            (:func:`~flowfm.data.units.check_windows_unit`, a bounded sample of windows); ``"g"``: used as is,
            unchecked; ``"m/s2"`` / ``"mg"``: checked to look like that, then divided by 9.80665 / 1000 (the
            result is float32 in memory, no longer a memmap).

    Returns:
        :class:`WindowDataset` with ``x (N, C, L)`` float32, ``pid (N,)``, ``y (N,)`` or None,
        ``fs`` and ``label_names`` from ``meta.json`` (default 30 Hz, None).

    Raises:
        FileNotFoundError: missing folder, ``X.npy``, ``pid.npy`` (or ``Y.npy`` with ``require_labels``).
        ValueError: wrong rank, ambiguous layout, NaN/inf (found chunk-wise, with count and position),
            L < 16, Y/pid length mismatch, unreadable files; :class:`~flowfm.data.units.UnitError` (a ValueError)
            for values that look like m/s^2 or milli-g when ``unit`` says otherwise (names the file and the flag).
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder; expected a folder holding X.npy, pid.npy[, Y.npy]")
    present = sorted(p.name for p in folder.iterdir())

    def need(fname: str, why: str) -> Path:
        p = folder / fname
        if not p.is_file():
            raise FileNotFoundError(f"{folder} has no {fname} ({why}); it contains: {present or 'nothing'}")
        return p

    x_path = need("X.npy", "the windows, (N, L, C) in g")
    pid_path = need("pid.npy", "the subject id of every window")
    y_path = folder / "Y.npy"
    if require_labels and not y_path.is_file():
        need("Y.npy", "labels are required here")

    meta = read_meta(folder)
    if layout == "auto" and meta.get("layout") in ("channels_last", "channels_first"):
        layout = meta["layout"]  # written by save_folder: never ambiguous
    raw = _load_npy(x_path, "windows", mmap=mmap)
    if raw.ndim != 3:
        raise ValueError(f"{x_path} must have rank 3 (N, L, C) channels-last or (N, C, L), got rank {raw.ndim} "
                         f"with shape {tuple(raw.shape)}")
    if raw.dtype.kind not in "fiu":
        raise TypeError(f"{x_path} must hold floats (acceleration in g), got dtype {raw.dtype}")
    lay = resolve_layout(raw.shape, layout, str(x_path))
    x = raw.transpose(0, 2, 1) if lay == "channels_last" else raw
    x = validate_windows(x, name=f"{x_path} (as N, C, L)")
    unit = canonical_unit(unit)
    per_g = check_windows_unit(x, str(x_path), unit)
    if per_g != UNITS["g"]:
        x = np.divide(x, np.float32(per_g), dtype=np.float32)
    n = x.shape[0]

    pid = _as_1d(_load_npy(pid_path, "subject ids", allow_pickle=allow_pickle), n, "pid.npy", "subject id")
    y: Optional[np.ndarray] = None
    if y_path.is_file():
        y = _as_1d(_load_npy(y_path, "labels", allow_pickle=allow_pickle), n, "Y.npy", "label")

    label_names = meta.get("label_names")
    if label_names is not None:
        label_names = {int(k): str(v) for k, v in label_names.items()}
    return WindowDataset(x=x, pid=pid, y=y, label_names=label_names, fs=float(meta.get("fs", 30.0)))


def _plain_labels(arr: np.ndarray, what: str) -> np.ndarray:
    """A non-object array (object arrays would need pickle on disk): all-str object arrays become str."""
    arr = np.asarray(arr)
    if arr.dtype.kind != "O":
        return arr
    if all(isinstance(v, str) for v in arr):
        return arr.astype(str)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
        return arr.astype(np.int64)
    raise TypeError(f"{what} is an object array of mixed types; save_folder writes int or str arrays only")


def check_out_dir(out_dir: Any, overwrite: bool) -> Path:
    """``out_dir`` as a Path if a dataset folder may be written there (call it before reading the inputs):
    FileExistsError if it exists and is not empty and ``overwrite`` is False, or (even with ``overwrite``) if it
    holds anything but dataset files (:data:`DATASET_FILES`), which replacing it would delete."""
    out = Path(out_dir)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; pass overwrite=True (--overwrite) to "
                              "replace it")
    check_replaceable(out, DATASET_FILES)
    return out


#: the files a dataset folder written by :func:`save_folder` holds (besides its ``extra_arrays``)
DATASET_FILES = ("X.npy", "Y.npy", "pid.npy", "meta.json", "time.npy")


def save_folder(ds: WindowDataset, path: Any, *, overwrite: bool = True, extra_arrays: Optional[dict] = None,
                extra_meta: Optional[dict] = None) -> Path:
    """Write ``ds`` as a dataset folder, atomically.

    Writes ``X.npy`` channels-last ``(N, L, C)`` float32 (the field's layout), ``Y.npy`` (if ``ds.y``),
    ``pid.npy`` and ``meta.json`` (``fs``, ``label_names``) into a temp folder beside ``path`` and then moves it
    into place (:func:`~flowfm.data.atomic.atomic_dir`): an interrupted save leaves ``path`` as it was
    (absent, or the complete previous dataset), never half-written. An existing folder is replaced when
    ``overwrite`` is True, and only when it holds nothing but dataset files (:data:`DATASET_FILES`, the
    ``extra_arrays``): a folder with anything else (raw recordings, a run, the user's files) is refused with
    FileExistsError, never deleted. ``extra_arrays`` ({file name: (N,) array}, e.g. ``{"time.npy": start_times}``) are
    written into the same folder in the same atomic step; ``extra_meta`` entries are added to ``meta.json``.

    Returns:
        The folder path.
    """
    if not isinstance(ds, WindowDataset):
        raise TypeError(f"save_folder expects a WindowDataset, got {type(ds).__name__}")
    x = validate_windows(ds.x, "ds.x")
    y = None if ds.y is None else _plain_labels(ds.y, "ds.y")
    pid = _plain_labels(ds.pid, "ds.pid")
    n, c, length = x.shape
    target = Path(path)
    with atomic_dir(target, overwrite=overwrite, replaces=DATASET_FILES + tuple(extra_arrays or ())) as tmp:
        # channels-last on disk, written chunk-wise so a memmap-backed x is never loaded at once
        out = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float32, shape=(n, length, c))
        step = max(1, (64 * 2**20) // (c * length * 4))
        for start in range(0, n, step):
            out[start:start + step] = np.asarray(x[start:start + step]).transpose(0, 2, 1)
        out.flush()
        del out
        if y is not None:
            np.save(tmp / "Y.npy", y, allow_pickle=False)
        np.save(tmp / "pid.npy", pid, allow_pickle=False)
        for name, arr in (extra_arrays or {}).items():
            arr = np.asarray(arr)
            if arr.shape[:1] != (n,) or Path(name).name != name or not name.endswith(".npy"):
                raise ValueError(f"extra array {name!r} must be a plain '<name>.npy' of N = {n} rows, got shape "
                                 f"{arr.shape}")
            np.save(tmp / name, arr, allow_pickle=False)
        meta = {"fs": ds.fs, "layout": "channels_last",
                "label_names": None if ds.label_names is None else {str(k): v for k, v in ds.label_names.items()},
                **(extra_meta or {})}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
    return target


def check_subjectwise(ds: WindowDataset, min_subjects: int = 2) -> np.ndarray:
    """Raise ValueError unless ``ds`` has at least ``min_subjects`` distinct subjects (subject-wise evaluation
    needs a held-out subject). Returns the sorted unique subject ids."""
    subjects = ds.subjects
    if len(subjects) < min_subjects:
        shown = ", ".join(map(str, subjects[:5])) or "none"
        raise ValueError(f"subject-wise evaluation needs at least {min_subjects} distinct subjects (pid), but this "
                         f"dataset of {len(ds)} windows has {len(subjects)}: [{shown}]")
    return subjects
