"""A fixed design / report split of a dataset's subjects (docs/design.md §5).

Design decisions (defaults, variants, the baseline recipe's tuning) are made on the **design** subjects; results
are reported on the **report** subjects, which no design decision looks at.

Rule (fixed, documented, no randomness): sort the subject ids (numerically when every id is an integer, else as
text) and put every third one, starting with the third, in the report part: sorted positions 2, 5, 8, ... On HAPT
(ids 1..30) that is ids 3, 6, ..., 30 (10 report subjects, 20 design subjects).
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

SPLITS = ("design", "report")


def _sorted_subjects(pid: np.ndarray) -> list:
    subjects = list(np.unique(np.asarray(pid)))
    try:
        return sorted(subjects, key=lambda s: int(s))
    except (TypeError, ValueError):
        return sorted(subjects, key=str)


def design_report_split(pid: np.ndarray) -> dict[str, list]:
    """``{"design": [ids], "report": [ids]}`` by the rule above. ValueError with fewer than 3 subjects."""
    subjects = _sorted_subjects(pid)
    if len(subjects) < 3:
        raise ValueError(f"a design / report split needs at least 3 subjects, found {len(subjects)}")
    report = subjects[2::3]
    return {"design": [s for s in subjects if s not in report], "report": report}


def parse_subject_ids(text: Optional[str]) -> Optional[list[str]]:
    """``"3,6, 9"`` -> ``["3", "6", "9"]``; None stays None. ValueError for a list with no id."""
    if text is None:
        return None
    ids = [s.strip() for s in str(text).split(",") if s.strip()]
    if not ids:
        raise ValueError(f"expected a comma-separated list of subject ids, got {text!r}")
    return ids


def subject_mask(pid: np.ndarray, split: Optional[str] = None, subjects: Optional[Iterable] = None,
                 exclude: Optional[Iterable] = None) -> np.ndarray:
    """``(N,)`` bool: windows of the ``split`` part (``"design"`` / ``"report"``), of the listed ``subjects``, and
    not of the ``exclude`` subjects (ids compared as text, so ``"7"`` matches 7). All given filters apply.

    ValueError naming the unknown split, the ids that match no window, or a selection that leaves nothing."""
    pid = np.asarray(pid)
    pid_text = pid.astype(str)
    known = set(pid_text)
    keep = np.ones(len(pid), dtype=bool)
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        part = {str(s) for s in design_report_split(pid)[split]}
        keep &= np.isin(pid_text, list(part))
    for name, ids in (("subjects", subjects), ("exclude_subjects", exclude)):
        if ids is None:
            continue
        wanted = {str(s) for s in ids}
        unknown = sorted(wanted - known)
        if unknown:
            shown = _sorted_subjects(pid)
            raise ValueError(f"{name}: subject(s) {', '.join(unknown)} are not in the data (its {len(shown)} "
                             f"subjects: {', '.join(str(s) for s in shown[:30])}{' ...' if len(shown) > 30 else ''})")
        inside = np.isin(pid_text, list(wanted))
        keep &= inside if name == "subjects" else ~inside
    if not keep.any():
        raise ValueError("that subject selection leaves no windows")
    return keep
