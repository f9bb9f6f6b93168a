"""Arguments and data access that several ``flowfm`` commands share."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from flowfm.data.units import UNIT_CHOICES, UNIT_HELP


def add_unit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unit", default=None, choices=list(UNIT_CHOICES), help=UNIT_HELP)


def load_dataset(spec: str, unit: Optional[str] = None):
    from flowfm.data import load_folder, load_hapt

    return load_hapt() if spec == "hapt" else load_folder(spec, unit=unit)


def declared_fs(spec: str) -> Optional[float]:
    """The sampling rate a dataset states: HAPT's 30 Hz, a folder's meta.json ``fs``; None when unstated."""
    from flowfm.data.folder import read_meta

    if spec == "hapt":
        return 30.0
    fs = read_meta(Path(spec)).get("fs") if Path(spec).is_dir() else None
    return None if fs is None else float(fs)


def at_model_rate(x, fs: Optional[float], spec, source: str):
    """Windows x (N, C, L) at ``fs`` (None: unknown) resampled to the model's rate (``spec``, a WindowSpec), with a
    note on stderr when their duration then differs from the model's windows."""
    from flowfm.data.window_spec import windows_at_rate

    out = windows_at_rate(x, fs, spec, source)
    if out.shape[-1] != spec.window_length:
        print(f"note: {source} windows are {out.shape[-1] / spec.sample_rate_hz:g} s at {spec.sample_rate_hz:g} Hz; "
              f"the model was trained on {spec.window_seconds:g} s windows", file=sys.stderr)
    return out


def open_corpus_arg(args):
    from flowfm.data.corpus import open_corpus

    return open_corpus(args.data, recording_fs=args.recording_fs, unit=args.unit)


def add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: the one way to replace an existing output (flowfm.run_folder); without it a command
    refuses, before any work, to write where an earlier output is."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists (default: refuse)")


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, choices=["auto", "eager", "triton", "cuda"],
                   help="kernel backend (default: $FLOWFM_BACKEND or auto)")


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def label_regimes(text: str) -> tuple:
    """"all,1,3,5" -> (None, 1, 3, 5): label regimes, None = all labels."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise ValueError(f"label regimes are 'all' or positive integers separated by commas, got {part!r}")
    return tuple(out)
