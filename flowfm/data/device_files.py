"""Raw device files (Axivity ``.cwa``, ActiGraph ``.gt3x``, GENEActiv ``.bin``, optionally ``.gz`` / ``.zip``) read
by `actipy <https://github.com/OxWearables/actipy>`_, the Oxford Wearables reader behind stepcount and
biobankAccelerometerAnalysis (``pip install 'flowfm[devices]'``).

actipy parses the file (with Java for .cwa / .gt3x / .bin, which must be on ``PATH``), low-pass filters it
(``lowpass_hz``, default 20 Hz), calibrates it to local gravity (van Hees et al. 2014, ``calibrate``), flags
non-wear (stationary for at least ``nonwear_patience``, default actipy's 90 min) as NaN (``detect_nonwear``) and
resamples it onto a uniform clock at the device's rate. The result becomes a
:class:`~flowfm.data.timed_recording.TimedRecording` in g with an absolute clock (epoch seconds, the device's
local time read as UTC): non-wear and recording gaps longer than ``max_gap_s`` split it into segments, so no window
straddles a non-wear bout. actipy's quality report (``CalibOK``, ``CalibErrorAfter(mg)``, ``NonwearTime(days)``,
``ReadErrors``, ...) is kept in :attr:`TimedRecording.info`.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .timed_recording import TimedRecording, recording_from_samples

__all__ = ["DEVICE_SUFFIXES", "is_device_file", "read_device_file"]

DEVICE_SUFFIXES = (".cwa", ".gt3x", ".bin")
_DEVICES = {".cwa": "Axivity", ".gt3x": "ActiGraph", ".bin": "GENEActiv"}
_COMPRESSED = (".gz", ".zip")


def _device_suffix(path: Union[str, Path]) -> Optional[str]:
    name = Path(path).name.lower()
    for comp in _COMPRESSED:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return next((s for s in DEVICE_SUFFIXES if name.endswith(s)), None)


def _plain(value):
    """actipy's info values as JSON-safe Python (numpy scalars unwrapped, NaN / inf -> None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def is_device_file(path: Union[str, Path]) -> bool:
    """Whether ``path`` names a device file actipy reads (``.cwa``, ``.gt3x``, ``.bin``, also ``.gz`` / ``.zip``)."""
    return _device_suffix(path) is not None


def read_device_file(path: Union[str, Path], *, subject: Optional[str] = None, calibrate: bool = True,
                     detect_nonwear: bool = True, nonwear_patience: Optional[str] = None,
                     lowpass_hz: Optional[float] = 20, max_gap_s: float = 1.0, verbose: bool = False):
    """Read one device file into a :class:`~flowfm.data.timed_recording.TimedRecording` (module docstring).

    Args:
        subject: the subject id (default: the file name without suffixes).
        calibrate / detect_nonwear / lowpass_hz: actipy's ``calibrate_gravity`` / ``detect_nonwear`` /
            ``lowpass_hz`` (None: no filter).
        nonwear_patience: minimum stationary time flagged as non-wear, as pandas text (e.g. ``"60m"``; default
            actipy's).
        max_gap_s: seconds without valid samples that split the recording.

    Raises:
        ImportError: actipy is not installed (names the extra).
        RuntimeError: no Java runtime on ``PATH`` (actipy's parsers need one).
        ValueError: actipy cannot parse the file, or it holds fewer than 2 valid samples.
    """
    path = Path(path)
    suffix = _device_suffix(path)
    if suffix is None:
        raise ValueError(f"{path} is not a device file (expected {', '.join(DEVICE_SUFFIXES)}, optionally .gz/.zip)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        import actipy
    except ImportError as err:
        raise ImportError(f"reading {_DEVICES[suffix]} {suffix} files needs actipy: pip install 'flowfm[devices]'"
                          f" (or pip install actipy), and a Java runtime") from err
    if shutil.which("java") is None:
        raise RuntimeError(f"reading {path} needs a Java runtime (Java 8 or newer) on PATH: actipy's "
                           f"{_DEVICES[suffix]} parser is Java; install one (e.g. apt install default-jre, "
                           "conda install openjdk, or brew install openjdk) and retry")
    kwargs = {"flag_nonwear_kwargs": {"patience": nonwear_patience}} if nonwear_patience else {}
    try:
        data, info = actipy.read_device(str(path), lowpass_hz=lowpass_hz if lowpass_hz else None,
                                        calibrate_gravity=calibrate, detect_nonwear=detect_nonwear,
                                        resample_hz="uniform", verbose=verbose, **kwargs)
    except (subprocess.CalledProcessError, EOFError, OSError, AssertionError) as err:
        raise ValueError(f"{path}: actipy could not read it as a {_DEVICES[suffix]} file ({err})") from err
    info = {str(k): _plain(v) for k, v in info.items()}
    fs = float(info.get("ResampleRate") or info.get("SampleRate") or 0)
    if not fs > 0 or len(data) < 2:
        raise ValueError(f"{path}: actipy read {len(data)} sample(s) at rate {fs:g} Hz; need at least 2")
    t = data.index.asi8.astype(np.float64) / 1e9  # DatetimeIndex ns -> epoch seconds
    xyz = data[["x", "y", "z"]].to_numpy(dtype=np.float64)
    rec: TimedRecording = recording_from_samples(
        t, xyz, labels=None, source=str(path), subject=subject if subject is not None else path.name.split(".")[0],
        channels=("x", "y", "z"), fs=fs, unit="g", absolute=True, max_gap_s=max_gap_s)
    rec.info = {"reader": f"actipy {getattr(actipy, '__version__', '?')}", **info}
    return rec
