"""Acceleration units: conversion to g, and the check by magnitude that every reader applies.

The library works in g (docs/design.md §2). Whatever a body-worn accelerometer does, gravity dominates its signal, so
the median vector magnitude ``m = median_t |a(t)|`` (over the first three channels, x, y, z) of a recording or a set
of windows is near 1 g (0.5-2 g for any
activity). The same data in m/s^2 has ``m ~ 9.8``, in milli-g ``m ~ 1000``. The unit the data *look like* is the
one nearest on a log scale,

    looks_like(m) = argmin_u | log(m / per_g[u]) |,      per_g = {g: 1, m/s2: 9.80665, mg: 1000}

i.e. g below sqrt(9.80665) = 3.13, m/s^2 from there to sqrt(9806.65) = 99, milli-g above. Readers refuse data whose
look contradicts the declared unit (:func:`check_unit`, :class:`UnitError`); the message names the file, what the
data look like and the ``--unit`` flag that converts them. Declaring ``unit="g"`` (``--unit g``) forces acceptance;
``"m/s2"`` and ``"mg"`` divide by 9.80665 and 1000. The check reads a bounded sample (:data:`CHECK_WINDOWS`
windows, :data:`CHECK_ROWS` rows), so it stays cheap on memory-mapped corpora.

:func:`to_g` is the converters' stricter form (public datasets of body-worn recordings: the median must be
within :data:`MAGNITUDE_RANGE_G` after conversion).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

__all__ = ["UNIT_CHOICES", "UNIT_HELP", "STANDARD_GRAVITY", "UNITS", "UNIT_NAMES", "UNIT_PER_G", "MAGNITUDE_RANGE_G", "CHECK_WINDOWS",
           "CHECK_ROWS", "UnitError", "canonical_unit", "looks_like", "median_magnitude", "check_unit",
           "sample_indices", "check_windows_unit", "to_g"]

#: the --unit choices of every command, and their help text
UNIT_CHOICES = ("m/s2", "g", "mg")
UNIT_HELP = ("unit of the data's acceleration: by default it must look like g by magnitude (median |a| ~ 1) and data "
             "that look like m/s^2 or milli-g are refused; m/s2 / mg convert to g (divide by 9.80665 / 1000), g uses "
             "the values as they are")

#: m/s^2 per g.
STANDARD_GRAVITY = 9.80665
#: How many of each unit (as the ``--unit`` flag spells it) make one g.
UNITS: dict[str, float] = {"g": 1.0, "m/s2": STANDARD_GRAVITY, "mg": 1000.0}
#: How messages write each unit.
UNIT_NAMES: dict[str, str] = {"g": "g", "m/s2": "m/s^2", "mg": "milli-g"}
#: The same factors keyed by the written names (the converters' spelling).
UNIT_PER_G: dict[str, float] = {UNIT_NAMES[u]: per_g for u, per_g in UNITS.items()}
_ALIASES = {"g": "g", "m/s2": "m/s2", "m/s^2": "m/s2", "ms2": "m/s2", "mg": "mg", "milli-g": "mg", "millig": "mg"}
#: Accepted median |a| in g after a converter's conversion (a recording of any activity has a median near 1 g; the
#: units differ by factors of 9.8 and 1000, far outside this range).
MAGNITUDE_RANGE_G = (0.3, 3.0)
#: Windows (evenly spaced over a source) the check reads; 64 windows of 3 x 300 are 57,600 samples.
CHECK_WINDOWS = 64
#: Rows of a continuous recording the check reads.
CHECK_ROWS = 65536


class UnitError(ValueError):
    """Data whose magnitude contradicts the declared unit (a ValueError: the command line exits with code 2)."""


def canonical_unit(unit: Optional[str]) -> Optional[str]:
    """``"g"``, ``"m/s2"`` or ``"mg"`` for any accepted spelling (``"m/s^2"``, ``"milli-g"``, ...); None stays
    None (nothing declared). ValueError naming the accepted ones otherwise."""
    if unit is None:
        return None
    key = str(unit).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)} (--unit m/s2|g|mg)")
    return _ALIASES[key]


def looks_like(median_raw: float) -> str:
    """The unit (``"g"``, ``"m/s2"``, ``"mg"``) whose 1 g is nearest to ``median_raw`` on a log scale."""
    m = max(float(median_raw), 1e-12)
    return min(UNITS, key=lambda u: abs(math.log(m / UNITS[u])))


def median_magnitude(samples: Any) -> float:
    """Median over the finite rows of ``samples`` (n, C) of the vector norm ``|a| = sqrt(a_0^2 + a_1^2 + a_2^2)``
    of the first three channels (the accelerometer's x, y, z by convention; all channels when C < 3); NaN when no
    row is finite."""
    a = np.asarray(samples, dtype=np.float64)[:, :3]
    a = a[np.isfinite(a).all(axis=1)]
    return float(np.median(np.linalg.norm(a, axis=1))) if len(a) else float("nan")


def check_unit(median_raw: float, source: str, unit: Optional[str] = None) -> float:
    """How many of the data's units make one g, after checking the magnitude against the declared ``unit``.

    ``unit`` None: the data must look like g (1.0 is returned); ``"g"``: accepted as is, unchecked (1.0);
    ``"m/s2"`` / ``"mg"``: the data must look like that unit (9.80665 / 1000 is returned: divide by it).

    Raises:
        UnitError: the data look like another unit; the message names ``source``, the median, and the flag to
            pass, e.g. ``"rec.csv: acceleration looks like m/s^2 (median |a| = 9.7; expected ~1 g). Pass
            --unit m/s2 to convert, or --unit g to use as is."``
    """
    unit = canonical_unit(unit)
    if unit == "g":
        return 1.0
    declared = unit or "g"
    if not math.isfinite(median_raw):
        return UNITS[declared]  # nothing finite to judge by; the readers' NaN checks report that
    looks = looks_like(median_raw)
    if looks == declared:
        return UNITS[declared]
    expected = "~1 g" if declared == "g" else f"~{UNITS[declared]:g} for {UNIT_NAMES[declared]}"
    advice = (f"Pass --unit {looks} to convert, or --unit g to use as is." if looks != "g"
              else "Pass --unit g to use it as is (it is already in g).")
    shown = f"{median_raw:.3g}" if median_raw < 1000 else f"{median_raw:.0f}"
    raise UnitError(f"{source}: acceleration looks like {UNIT_NAMES[looks]} (median |a| = {shown}; "
                    f"expected {expected}). {advice}")


def sample_indices(n: int, max_count: int = CHECK_WINDOWS) -> np.ndarray:
    """At most ``max_count`` evenly spaced, sorted, distinct indices into ``range(n)`` (first and last included)."""
    if n <= max_count:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, max_count).round().astype(np.int64))


def check_windows_unit(x: Any, source: str, unit: Optional[str] = None, max_windows: int = CHECK_WINDOWS) -> float:
    """:func:`check_unit` on windows ``x`` (N, C, L) (numpy, memmap, corpus: anything indexed by an int array),
    judged by at most ``max_windows`` evenly spaced windows. Returns the units per g (divide ``x`` by it)."""
    if canonical_unit(unit) == "g" or len(x) == 0:
        return 1.0
    w = np.asarray(x[sample_indices(len(x), max_windows)])  # (n, C, L)
    return check_unit(median_magnitude(w.transpose(0, 2, 1).reshape(-1, w.shape[1])), source, unit)


def to_g(values: Any, unit: str, source: str) -> np.ndarray:
    """Convert ``(T, 3)`` acceleration from ``unit`` (``"g"``, ``"m/s^2"``, ``"milli-g"`` or the flag spellings) to
    g, after checking that the median magnitude of the finite rows is plausible (:data:`MAGNITUDE_RANGE_G`).

    Raises:
        ValueError: no finite sample, or a magnitude that says the unit is wrong (names ``source``, the median
            found, and the unit the data look like).
    """
    key = canonical_unit(unit)
    name = UNIT_NAMES[key]
    raw = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(raw).all(axis=1)
    if not finite.any():
        raise ValueError(f"{source}: no finite accelerometer sample (all {len(raw)} rows are NaN/inf)")
    median_raw = median_magnitude(raw[finite])
    per_g = UNITS[key]
    lo, hi = MAGNITUDE_RANGE_G
    if not lo <= median_raw / per_g <= hi:
        looks = UNIT_NAMES[looks_like(median_raw)]
        hint = (f"the values look like {looks}, not {name}" if looks != name
                else "the values are implausible (a constant, zero or wrong column?)")
        raise ValueError(
            f"{source}: accelerometer magnitude has median {median_raw:.4g} {name} = {median_raw / per_g:.3g} g, "
            f"but a body-worn recording has a median near 1 g ({per_g:g} {name}); {hint}. Check the file, the "
            f"columns and the unit.")
    return raw / per_g
