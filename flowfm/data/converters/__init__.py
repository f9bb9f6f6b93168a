"""Converters from public datasets' original raw formats to the standard window folder (docs/design.md §2).

``convert(name, raw_dir, out_dir)`` reads the raw files of one dataset, converts them to g, resamples to 30 Hz,
cuts 10 s windows with a 5 s hop, labels a window by its majority label when that covers >= 80 % of it, and writes
``X.npy (N, 300, 3)``, ``Y.npy``, ``pid.npy`` and ``meta.json`` with :func:`~flowfm.data.folder.save_folder`
(atomic: any error writes nothing). Command line: ``flowfm convert NAME RAW_DIR OUT_DIR`` (``--list``).

Modules: :mod:`.labelled_recording` (the shared recording -> windows -> folder pipeline) and one module per dataset,
each documenting its source, columns, units, rate, label map and exclusions: :mod:`.pamap2`, :mod:`.wisdm`,
:mod:`.opportunity`, :mod:`.realworld`, :mod:`.adl`, :mod:`.capture24`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Union

from . import adl, capture24, opportunity, pamap2, realworld, wisdm
from .labelled_recording import ConversionSummary, Recording, Source, check_out_dir, write_dataset

__all__ = ["CONVERTERS", "Converter", "convert", "ConversionSummary", "Recording", "Source"]


@dataclass(frozen=True)
class Converter:
    """A registered dataset: ``read(raw_dir, **options) -> Source`` plus a one-line description."""

    name: str
    description: str
    read: Callable[..., Source]
    module: ModuleType


CONVERTERS: dict[str, Converter] = {
    m.NAME: Converter(m.NAME, m.DESCRIPTION, m.read, m)
    for m in (pamap2, wisdm, opportunity, realworld, adl, capture24)
}


def check_apart(raw_dir: Union[str, Path], out_dir: Union[str, Path]) -> None:
    """ValueError if the output folder is, contains or lies inside the raw folder: a conversion never writes over,
    around or into the originals it reads."""
    raw, out = Path(raw_dir).resolve(), Path(out_dir).resolve()
    if out == raw or out in raw.parents or raw in out.parents:
        relation = "is" if out == raw else "contains" if out in raw.parents else "lies inside"
        raise ValueError(f"OUT_DIR {out_dir} {relation} RAW_DIR {raw_dir}; expected an output folder apart from the "
                         "raw files (e.g. a sibling folder)")


def convert(name: str, raw_dir: Union[str, Path], out_dir: Union[str, Path], *, keep_unlabelled: bool = False,
            overwrite: bool = False, **options: Any) -> ConversionSummary:
    """Convert dataset ``name`` from ``raw_dir`` (its original files) into the folder ``out_dir``.

    Args:
        name: a key of :data:`CONVERTERS`.
        keep_unlabelled: keep windows without a valid label (stored with label -1), e.g. for pretraining;
            default: drop them (a benchmark folder of labelled windows).
        overwrite: replace an existing non-empty ``out_dir``.
        options: passed to the converter's ``read`` (e.g. ``exclude=()`` for PAMAP2, ``scheme=`` for Capture-24).

    Raises:
        ValueError: unknown ``name``, malformed raw files (the message names the file and what was expected).
        FileNotFoundError: ``raw_dir`` missing or without the dataset's files.
        FileExistsError: ``out_dir`` exists, is not empty, and ``overwrite`` is False.
    """
    if name not in CONVERTERS:
        raise ValueError(f"unknown dataset {name!r}; available converters: {', '.join(CONVERTERS)}")
    conv = CONVERTERS[name]
    check_apart(raw_dir, out_dir)
    check_out_dir(out_dir, overwrite)  # before reading a possibly large raw corpus
    source = conv.read(raw_dir, **options)
    return write_dataset(source, out_dir, keep_unlabelled=keep_unlabelled, overwrite=overwrite, what=name)
