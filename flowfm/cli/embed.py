"""``flowfm embed``."""
from __future__ import annotations

import sys
import time

from typing import Optional
from flowfm.argument_types import BATCH, RATE_HZ
from flowfm.cli.common import add_overwrite, add_unit, at_model_rate, declared_fs, load_dataset


def model_windows(specs, fs: Optional[float], unit: Optional[str], spec):
    """Yield (name, windows (n, C, L) at the model's rate in g, pid (n,), start_time (n,) or None, y or None) for
    each ``flowfm embed --data`` spec: 'hapt', a window folder, or a continuous .npy/.csv recording."""
    import numpy as np

    from flowfm.data.corpus import expand_paths
    from flowfm.data.read_recording import has_clock, read_recordings
    from flowfm.data.recording import RECORDING_SUFFIXES, inspect_recording, recording_unit, recording_windows

    for path in expand_paths(specs):
        name = str(path)
        if name == "hapt" or path.is_dir():
            ds = load_dataset(name, unit)
            x = at_model_rate(ds.x, fs if fs is not None else declared_fs(name), spec, name)
            times = None
            if path.is_dir() and (path / "time.npy").is_file():
                times = np.load(path / "time.npy", allow_pickle=False)
                if times.shape != (len(ds),):
                    raise ValueError(f"{path / 'time.npy'} has shape {times.shape}; expected ({len(ds)},), one "
                                     "start time per window")
            yield name, x, np.asarray(ds.pid), times, ds.y
        elif path.is_file() and has_clock(path):
            # a table with a clock column: its own rate, gaps split it, labels read when a label column exists
            for rec in read_recordings(path, fs=fs, unit=unit):
                if len(rec.channels) != len(spec.channels):
                    raise ValueError(f"{rec.source} has {len(rec.channels)} axis columns; the model expects "
                                     f"{len(spec.channels)} ({', '.join(spec.channels)})")
                x, start, y = rec.windows(spec.sample_rate_hz, spec.window_seconds, spec.hop_seconds)
                if not len(x):
                    raise ValueError(f"recording {rec.source} has no segment as long as one "
                                     f"{spec.window_seconds:g} s window")
                yield rec.source, x, np.full(len(x), rec.subject), start, y
        elif path.suffix.lower() in RECORDING_SUFFIXES and path.is_file():
            if fs is None:
                raise ValueError(f"{path} is a continuous recording: state its sampling rate with --fs HZ")
            info = inspect_recording(path)
            if info.n_channels != len(spec.channels):
                raise ValueError(f"{path} has {info.n_channels} columns; the model expects {len(spec.channels)} "
                                 f"channels ({', '.join(spec.channels)}) in g")
            per_g = recording_unit(path, unit)
            blocks = list(recording_windows(path, fs, fs_out=spec.sample_rate_hz, window_s=spec.window_seconds,
                                            hop_s=spec.hop_seconds, info=info))
            if not blocks:
                raise ValueError(f"recording {path} lasts {info.n_rows / fs:.1f} s, shorter than one "
                                 f"{spec.window_seconds:g} s window")
            x = np.concatenate(blocks) / np.float32(per_g)
            yield name, x, np.full(len(x), path.stem), np.arange(len(x)) * spec.hop_seconds, None
        elif not path.exists():
            raise FileNotFoundError(f"{path} does not exist (expected 'hapt', a folder with X.npy and pid.npy, or a "
                                    ".npy/.csv recording)")
        else:
            raise ValueError(f"{path}: expected a folder with X.npy, a CSV / parquet recording with a time column, or a "
                             f"headerless .npy/.csv recording, got a "
                             f"'{path.suffix}' file")


def run(args) -> int:
    import numpy as np

    from flowfm.checkpoint import CheckpointError, load_model
    from flowfm.data.atomic import atomic_open
    from flowfm.run_folder import check_new_file

    check_new_file(args.out, args.overwrite)
    try:
        model = load_model(args.checkpoint, map_location=args.device)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spec = model.data_spec
    t0 = time.perf_counter()
    z, pid, index, times, labels = [], [], [], [], []
    for name, x, p, t, y in model_windows(args.data, args.fs, args.unit, spec):
        # the unit was checked (and converted) by the reader: embed takes the windows as g
        z.append(model.embed(x, batch_size=args.batch_size, unit="g").numpy())
        pid.append(p)
        index.append(np.arange(len(x), dtype=np.int64))
        times.append(t)
        labels.append(y)
    out = {"z": np.concatenate(z).astype(np.float32), "window_index": np.concatenate(index)}
    kinds = {p.dtype.kind for p in pid}
    out["pid"] = np.concatenate(pid if len(kinds) == 1 and "O" not in kinds else [p.astype(str) for p in pid])
    if all(t is not None for t in times):
        try:
            out["start_time"] = np.concatenate(times)
        except (TypeError, ValueError):
            pass
    if all(y is not None for y in labels) and len({y.dtype.kind for y in labels}) == 1:
        out["y"] = np.concatenate(labels)
    out["sample_rate_hz"] = np.float64(spec.sample_rate_hz)
    out["window_length"] = np.int64(spec.window_length)
    with atomic_open(args.out, "wb") as f:
        np.savez(f, **out)
    keys = ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items() if np.ndim(v))
    print(f"{len(out['z'])} windows embedded ({model.method}, z of dim {out['z'].shape[1]}) in "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}: {keys}. z is small in scale: standardise it (e.g. "
          "sklearn StandardScaler fit on training windows) before a linear classifier")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="representations z of every window of datasets or recordings -> .npz (z, pid, "
                                     "window_index, start_time when known, y when labelled)")
    p.add_argument("--checkpoint", required=True, help="model folder of any method, e.g. RUN/model")
    p.add_argument("--data", nargs="+", required=True,
                   help="'hapt', folders in the X.npy/pid.npy layout (an optional time.npy gives start times), or "
                        "continuous (T, C) .npy/.csv recordings (need --fs; windows at the model's rate, length and "
                        "hop; start_time in seconds from the recording's start)")
    p.add_argument("--fs", type=RATE_HZ, default=None,
                   help="sampling rate of the data in Hz (recordings: required; folders: overrides meta.json); data "
                        "at another rate than the model's are resampled to it (polyphase)")
    add_unit(p)
    p.add_argument("--batch-size", type=BATCH, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="the .npz file to write (atomically)")
    add_overwrite(p, "the --out file")
    p.set_defaults(func=run)

