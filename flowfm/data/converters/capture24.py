"""Capture-24 -> standard windows (wrist, free-living, Walmsley2020 classes by default).

Source: Chan Chang et al., "CAPTURE-24: a large dataset of wrist-worn activity tracker data collected in the
wild for human activity recognition", Scientific Data 2024; https://ora.ox.ac.uk/objects/uuid:99d7c092-d865-
4a19-b096-cc16440cd001 (``capture24/P001.csv.gz`` .. ``P151.csv.gz``, ``annotation-label-dictionary.csv``).

Raw format: one CSV (gzip or plain) per participant with the header ``time,x,y,z,annotation``, 100 Hz, x/y/z in
g (an Axivity AX3 on the dominant wrist, about 24 h), ``annotation`` a free-text compendium code (empty where
unannotated). ``annotation-label-dictionary.csv`` maps each annotation (column ``annotation``) to label schemes
(columns ``label:<scheme>``). The ``time`` column is not used: the files are continuous at 100 Hz.

Choices: scheme **Walmsley2020** (classes sleep, sedentary, light, moderate-vigorous, codes 0-3; another scheme
column can be chosen with ``scheme=``, its classes in sorted order); an empty annotation is label -1 (the
window is dropped, or kept unlabelled with ``keep_unlabelled``); an annotation missing from the dictionary is an
error; all participants, subject id ``P001``.. (str) from the file name; NaN rows are interpolated up to 1 s,
longer runs cut the recording (:mod:`.labelled_recording`). Reading is streaming (about 8.6 M rows per participant):
expect roughly 20-40 s per file with the standard-library CSV reader.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .labelled_recording import Recording, Source, raw_files, to_g

NAME = "capture24"
DESCRIPTION = "Capture-24 P*.csv.gz (time,x,y,z,annotation), 100 Hz g, Walmsley2020: sleep/sedentary/light/MVPA"
FS = 100.0
DICTIONARY = "annotation-label-dictionary.csv"
DEFAULT_SCHEME = "Walmsley2020"
WALMSLEY2020 = ("sleep", "sedentary", "light", "moderate-vigorous")
HEADER = ("time", "x", "y", "z", "annotation")
_EXPECTED = "Capture-24 P<nnn>.csv.gz with header time,x,y,z,annotation (+ annotation-label-dictionary.csv)"
_CHUNK = 1_000_000


def read_dictionary(path: Path, scheme: str = DEFAULT_SCHEME) -> tuple[tuple[str, ...], dict[str, int]]:
    """``(label_names, {annotation: code})`` for ``scheme`` from ``annotation-label-dictionary.csv``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file (expected columns annotation,label:{scheme},...)")
    header = [h.strip() for h in rows[0]]
    column = f"label:{scheme}"
    if "annotation" not in header or column not in header:
        schemes = [h[len("label:"):] for h in header if h.startswith("label:")]
        raise ValueError(f"{path}: needs columns 'annotation' and {column!r}; found {header} (schemes: {schemes})")
    ia, il = header.index("annotation"), header.index(column)
    mapping_names = {r[ia]: r[il].strip() for r in rows[1:] if len(r) > max(ia, il)}
    used = set(mapping_names.values()) - {""}
    if scheme == DEFAULT_SCHEME:
        unknown = used - set(WALMSLEY2020)
        if unknown:
            raise ValueError(f"{path}: column {column} has label(s) {sorted(unknown)}; expected {list(WALMSLEY2020)}")
        names = WALMSLEY2020
    else:
        names = tuple(sorted(used))
    mapping = {a: (names.index(n) if n else -1) for a, n in mapping_names.items()}
    return names, mapping


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def _read_file(path: Path, mapping: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    xyz_parts, code_parts = [], []
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file (expected {_EXPECTED})") from None
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: unreadable ({e}); expected {_EXPECTED}") from None
        missing = [c for c in HEADER[1:] if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} in header {header}; expected {list(HEADER)}")
        ix, iy, iz, ia = (header.index(c) for c in HEADER[1:])
        xyz, codes = [], []
        try:
            for lineno, row in enumerate(reader, 2):
                try:
                    xyz.append((float(row[ix]), float(row[iy]), float(row[iz])))
                    ann = row[ia] if len(row) > ia else ""
                except (ValueError, IndexError):
                    raise ValueError(f"{path}, line {lineno}: missing or non-numeric x/y/z in {row[:5]}") from None
                if ann == "" or ann.lower() == "nan":
                    codes.append(-1)
                elif ann in mapping:
                    codes.append(mapping[ann])
                else:
                    raise ValueError(f"{path}, line {lineno}: annotation {ann[:80]!r} is not in {DICTIONARY}")
                if len(xyz) == _CHUNK:
                    xyz_parts.append(np.array(xyz, dtype=np.float32))
                    code_parts.append(np.array(codes, dtype=np.int8))
                    xyz, codes = [], []
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: unreadable or truncated ({e})") from None
        if xyz:
            xyz_parts.append(np.array(xyz, dtype=np.float32))
            code_parts.append(np.array(codes, dtype=np.int8))
    if not xyz_parts:
        raise ValueError(f"{path}: header only, no samples (expected {_EXPECTED})")
    return np.concatenate(xyz_parts), np.concatenate(code_parts)


def read(raw_dir: Union[str, Path], scheme: str = DEFAULT_SCHEME) -> Source:
    """The recordings of ``raw_dir`` (``P<nnn>.csv[.gz]`` and ``annotation-label-dictionary.csv``, searched
    recursively); one recording per participant, read lazily."""
    files = [p for p in raw_files(raw_dir, "**/P*.csv*", _EXPECTED)
             if re.fullmatch(r"P\d+\.csv(\.gz)?", p.name)]
    if not files:
        raise FileNotFoundError(f"no P<nnn>.csv.gz under {raw_dir} (expected {_EXPECTED})")
    dictionary = raw_files(raw_dir, f"**/{DICTIONARY}", f"{DICTIONARY} (annotation -> label scheme)")[0]
    names, mapping = read_dictionary(dictionary, scheme)

    def recordings() -> Iterator[Recording]:
        for path in files:
            xyz, codes = _read_file(path, mapping)
            acc = to_g(xyz, "g", str(path))
            yield Recording(acc, codes, FS, path.name.split(".")[0], str(path))

    return Source(names, recordings())
