"""One indexable pretraining corpus over many window sources, never concatenated in memory.

A :class:`WindowCorpus` presents N windows ``(N, C, L)`` float32 in g from a list of sources, in order:

    shard folder   ``X.npy`` ``(n, L, C)`` (or ``(n, C, L)``) memory-mapped read-only; ``pid.npy`` optional
    in-memory      any ``(n, C, L)`` array, e.g. UCI HAPT (``"hapt"``)
    recording      a continuous ``(T, C)`` ``.npy`` / ``.csv`` recording at a stated rate, resampled to 30 Hz once
                   (kept as a ``(T_30, C)`` float32 signal: 360 B per second for 3 channels) and windowed on demand

``corpus[idx]`` with an int array returns ``(len(idx), C, L)`` float32, channels-first: global index ``i`` lives in
source ``s`` with ``offsets[s] <= i < offsets[s + 1]`` (``offsets`` the cumulative source lengths).

Bounded memory: a shard is mapped, not read, so opening costs its header (and the unit check's sample, below).
Reading a batch faults in just the pages of its windows (each fault maps the page-cache folio around it, up to 2
MiB), and every 16 windows those pages are dropped from this process's mapping again (``madvise(MADV_DONTNEED)``:
for a read-only file mapping that unmaps the pages, which stay in the kernel's page cache). The resident set thus
stays at one batch plus at most 16 folios (<= 32 MiB) however many windows an epoch reads, instead of growing to the
corpus size. NaN/inf windows are reported when a batch reads them (a check over the batch only). Opening reads the
headers and, for the unit check (:func:`check_source_unit`), at most 64 evenly spaced windows of each source.
"""
from __future__ import annotations

import glob
import mmap
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from .folder import read_meta, resolve_layout
from .recording import RECORDING_SUFFIXES, inspect_recording, read_npy_header, resample_recording
from .resample import window_params
from .units import canonical_unit, check_windows_unit
from .windows import MIN_WINDOW_LENGTH

__all__ = ["WindowCorpus", "CorpusView", "ShardSource", "ArraySource", "RecordingSource", "open_corpus",
           "expand_paths", "NORMALIZER_WINDOWS", "check_source_unit"]

#: Windows :meth:`WindowCorpus.subsample` keeps for fitting the normaliser (3 x 32768 x 300 samples: the mean's
#: sampling error is far below the 1e-3 g the data is measured to).
NORMALIZER_WINDOWS = 32768
_GLOB_CHARS = set("*?[")
_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
# Windows copied between two releases. A fault maps the whole page-cache folio holding the page, up to 2 MiB
# (measured: about 1 MiB per window on ext4), so at most this many folios are mapped at once: <= 32 MiB. Each
# release costs re-faults later; 16 keeps reads at about 80 % of the speed of never releasing.
_RELEASE_ROWS = 16


class ShardSource:
    """The windows of one shard folder, memory-mapped read-only while a read lasts. Opening reads the headers only;
    no file stays open between reads (a mapping holds a file descriptor: thousands of shards would exhaust them).

    Attributes: ``name`` (the folder, for errors), ``n``, ``n_channels`` C, ``window_length`` L, ``fs`` (Hz, from
    ``meta.json``, default 30)."""

    per_g = 1.0  # units per g of the stored values (set by check_source_unit; reads are divided by it)

    def __init__(self, folder: Any):
        folder = Path(folder)
        self.name = str(folder)
        x_path = folder / "X.npy"
        if not x_path.is_file():
            present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            raise FileNotFoundError(f"shard {folder} has no X.npy (the windows, (N, L, C) in g); it contains: "
                                    f"{present or 'nothing'}")
        shape, fortran, dtype, offset = read_npy_header(x_path)
        if len(shape) != 3:
            raise ValueError(f"{x_path} must have rank 3 (N, L, C), got shape {shape}")
        if dtype.kind not in "fiu":
            raise TypeError(f"{x_path} must hold real numbers (acceleration in g), got dtype {dtype}")
        if shape[0] < 1:
            raise ValueError(f"{x_path} holds no windows (shape {shape})")
        meta = read_meta(folder)
        layout = meta.get("layout") if meta.get("layout") in ("channels_last", "channels_first") else "auto"
        self._channels_last = resolve_layout(shape, layout, str(x_path)) == "channels_last"
        self.n = shape[0]
        self.n_channels, self.window_length = (shape[2], shape[1]) if self._channels_last else shape[1:]
        if self.window_length < MIN_WINDOW_LENGTH:
            raise ValueError(f"{x_path} windows are too short: L = {self.window_length} < {MIN_WINDOW_LENGTH}")
        self.fs = float(meta.get("fs", 30.0))
        pid_path = folder / "pid.npy"
        if pid_path.is_file():
            pid_shape = read_npy_header(pid_path)[0]
            if pid_shape[:1] != (self.n,):
                raise ValueError(f"{pid_path} has shape {pid_shape} but X.npy holds {self.n} windows")
        self._pid_path = pid_path if pid_path.is_file() else None
        self._x_path, self._layout = x_path, (shape, dtype, offset, "F" if fortran else "C")

    def __len__(self) -> int:
        return self.n

    def subject_ids(self) -> Optional[np.ndarray]:
        """(n,) subject ids from ``pid.npy``, None when the shard has none."""
        if self._pid_path is None:
            return None
        return np.load(self._pid_path, allow_pickle=False)

    def read(self, idx: np.ndarray, out: np.ndarray, check_finite: bool = True) -> None:
        """Write windows ``idx`` (sorted local int array) into ``out``, ``(len(idx), C, L)`` float32; ValueError
        naming the first NaN/inf window unless ``check_finite`` is False."""
        shape, dtype, offset, order = self._layout
        step = idx.size if _MADV_DONTNEED is None else _RELEASE_ROWS
        with open(self._x_path, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            x = np.ndarray(shape, dtype=dtype, buffer=mapping, offset=offset, order=order)
            x = x.transpose(0, 2, 1) if self._channels_last else x  # (n, C, L) view, nothing read yet
            for start in range(0, idx.size, step):
                out[start:start + step] = x[idx[start:start + step]]  # fancy indexing copies out of the mapping
                if _MADV_DONTNEED is not None:
                    mapping.madvise(_MADV_DONTNEED)  # unmap what the copy faulted in (the page cache keeps it)
            del x  # the buffer export must end before the mapping can close
        finally:
            mapping.close()
        finite = np.isfinite(out) if check_finite else True
        if not np.all(finite):
            bad = int(np.argwhere(~finite)[0, 0])
            raise ValueError(f"{self.name}/X.npy window {int(idx[bad])} holds NaN/inf values; fix or drop it")


class ArraySource:
    """Windows already in an ``(n, C, L)`` array (in memory or a memmap), e.g. a :class:`WindowDataset`'s ``x``."""

    per_g = 1.0  # units per g of the stored values (set by check_source_unit; reads are divided by it)

    def __init__(self, x: np.ndarray, name: str, fs: float = 30.0, pid: Optional[np.ndarray] = None):
        if x.ndim != 3:
            raise ValueError(f"{name}: windows must have shape (N, C, L), got {tuple(x.shape)}")
        if pid is not None and len(pid) != len(x):
            raise ValueError(f"{name}: {len(pid)} subject ids for {len(x)} windows")
        self._x, self.name, self.fs, self._pid = x, name, float(fs), pid
        self.n, self.n_channels, self.window_length = (int(s) for s in x.shape)

    def __len__(self) -> int:
        return self.n

    def subject_ids(self) -> Optional[np.ndarray]:
        """(n,) subject ids, None when none were given."""
        return None if self._pid is None else np.asarray(self._pid)

    def read(self, idx: np.ndarray, out: np.ndarray, check_finite: bool = True) -> None:
        out[...] = self._x[idx]


class RecordingSource:
    """A continuous recording at ``fs`` Hz, resampled to ``fs_out`` and cut on demand into windows of
    ``window_s`` s every ``hop_s`` s: window ``k`` is the signal's rows ``[k * hop, k * hop + L)``, transposed,
    exactly the ``k``-th window of ``make_windows(resample_to(signal, fs, fs_out), fs_out)``."""

    per_g = 1.0  # units per g of the stored values (set by check_source_unit; reads are divided by it)

    def __init__(self, path: Any, fs: float, fs_out: float = 30.0, window_s: float = 10.0, hop_s: float = 5.0):
        self.name, self.fs = str(path), float(fs_out)
        info = inspect_recording(path)
        self._signal = resample_recording(path, fs, fs_out, info=info)
        self.window_length, self._hop = window_params(fs_out, window_s, hop_s)
        self.n_channels = info.n_channels
        t = self._signal.shape[0]
        self.n = 0 if t < self.window_length else (t - self.window_length) // self._hop + 1
        if self.n == 0:
            raise ValueError(f"recording {path} lasts {info.n_rows / fs:.1f} s at {fs:g} Hz, shorter than one "
                             f"{window_s:g} s window")

    def __len__(self) -> int:
        return self.n

    def subject_ids(self) -> np.ndarray:
        """(n,) subject ids: a continuous recording is one subject, named by its path."""
        return np.full(len(self), self.name, dtype=object)

    def read(self, idx: np.ndarray, out: np.ndarray, check_finite: bool = True) -> None:
        rows = idx[:, None] * self._hop + np.arange(self.window_length)  # (B, L) sample indices
        out[...] = self._signal[rows].transpose(0, 2, 1)


Source = Union[ShardSource, ArraySource, RecordingSource]


def _as_index(key: Any, n: int) -> tuple[np.ndarray, bool]:
    """``(int64 indices in [0, n), is_scalar)`` for an int, a slice or an int array (negative counts from the end)."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64), False
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        idx, scalar = np.array([key], dtype=np.int64), True
    else:
        idx, scalar = np.asarray(key), False
        if idx.dtype.kind not in "iu" and idx.size:
            raise TypeError(f"corpus index must be an int, a slice or an int array, got dtype {idx.dtype}")
        idx = idx.astype(np.int64).reshape(-1)
    if idx.size and (idx.max() >= n or idx.min() < -n):
        raise IndexError(f"index out of range for a corpus of {n} windows")
    return np.where(idx < 0, idx + n, idx), scalar


class _Indexable:
    """Shared array-like surface: ``len``, ``shape`` (N, C, L), ``ndim``, ``dtype``, ``subset``, ``subsample``."""

    n_channels: int
    window_length: int
    ndim = 3
    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), self.n_channels, self.window_length)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        """``(B, C, L)`` float32 for an int array or slice, ``(C, L)`` for an int. Sorted indices read each source
        in one ascending pass; other orders (and repeats) are sorted first and the result put back in order."""
        idx, scalar = _as_index(key, len(self))
        if idx.size > 1 and np.any(idx[1:] < idx[:-1]):
            order = np.argsort(idx, kind="stable")
            out = np.empty((idx.size, self.n_channels, self.window_length), dtype=np.float32)
            out[order] = self._read(idx[order])
        else:
            out = self._read(idx)
        return out[0] if scalar else out

    def subset(self, index: Any) -> "CorpusView":
        """A lazy view of the windows ``index`` (int array or slice), read through this corpus on demand."""
        return CorpusView(self, _as_index(index, len(self))[0])

    def subsample(self, max_windows: int = NORMALIZER_WINDOWS, seed: int = 0) -> "_Indexable":
        """Itself if it holds at most ``max_windows`` windows, else a view of ``max_windows`` windows drawn without
        replacement (seeded, sorted) -- e.g. to fit the normaliser from a bounded read."""
        if len(self) <= max_windows:
            return self
        rng = np.random.default_rng(seed)
        return CorpusView(self, np.sort(rng.choice(len(self), size=max_windows, replace=False)))


class WindowCorpus(_Indexable):
    """``N = sum(len(s))`` windows ``(N, C, L)`` from ``sources`` in order (see the module docstring).

    Raises ValueError, naming the offending source, unless all sources agree on C, L and the sampling rate;
    ValueError for no sources or no windows."""

    def __init__(self, sources: Sequence[Source]):
        sources = list(sources)
        if not sources:
            raise ValueError("a corpus needs at least one source of windows")
        ref = sources[0]
        for s in sources[1:]:
            if (s.n_channels, s.window_length) != (ref.n_channels, ref.window_length):
                raise ValueError(f"{s.name} holds windows of C={s.n_channels} channels x L={s.window_length} "
                                 f"samples, but {ref.name} holds C={ref.n_channels} x L={ref.window_length}: all "
                                 "sources of a corpus must agree")
            if s.fs != ref.fs:
                raise ValueError(f"{s.name} is sampled at {s.fs:g} Hz but {ref.name} at {ref.fs:g} Hz: all sources "
                                 "of a corpus must share one rate")
        self.sources = tuple(sources)
        self.n_channels, self.window_length, self.fs = ref.n_channels, ref.window_length, ref.fs
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in sources])]).astype(np.int64)
        if self.offsets[-1] == 0:
            raise ValueError(f"the corpus holds no windows ({len(sources)} empty sources)")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _read(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((idx.size, self.n_channels, self.window_length), dtype=np.float32)
        # idx is sorted: source s serves the contiguous run idx[cut[s]:cut[s + 1]]
        cut = np.searchsorted(idx, self.offsets)
        for s in np.flatnonzero(cut[1:] > cut[:-1]):
            part = out[cut[s]:cut[s + 1]]
            self.sources[s].read(idx[cut[s]:cut[s + 1]] - self.offsets[s], part)
            if self.sources[s].per_g != 1.0:
                part /= np.float32(self.sources[s].per_g)
        return out

    def subject_ids(self) -> np.ndarray:
        """(N,) subject id of every window, from each source (``pid.npy`` of a shard, HAPT's user ids); a
        continuous recording is one subject, named by its path. ValueError when a shard has no ``pid.npy``."""
        parts = []
        for source in self.sources:
            pid = source.subject_ids()
            if pid is None:
                raise ValueError(f"{source.name} has no subject ids (pid.npy); subjects cannot be selected")
            parts.append(np.asarray(pid))
        kinds = {p.dtype.kind for p in parts}
        return np.concatenate(parts if len(kinds) == 1 else [p.astype(str).astype(object) for p in parts])

    def without_subjects(self, subjects: Iterable) -> "CorpusView":
        """The windows of every subject except ``subjects`` (compared as strings, so ``"7"`` matches id 7).
        ValueError naming the ids that match no window, or when nothing is left."""
        pid_text = self.subject_ids().astype(str)
        wanted = {str(s) for s in subjects}
        unknown = sorted(wanted - set(pid_text))
        if unknown:
            known = sorted({str(p) for p in pid_text})
            raise ValueError(f"subject(s) {', '.join(unknown)} are not in the corpus (its {len(known)} subjects: "
                             f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''})")
        keep = np.flatnonzero(~np.isin(pid_text, list(wanted)))
        if keep.size == 0:
            raise ValueError("excluding those subjects leaves no windows")
        return self.subset(keep)

    def __repr__(self) -> str:
        return (f"WindowCorpus(N={len(self)}, C={self.n_channels}, L={self.window_length}, fs={self.fs:g} Hz, "
                f"sources={len(self.sources)})")


class CorpusView(_Indexable):
    """Windows ``index`` (int64 array into ``base``) of a corpus, read lazily."""

    def __init__(self, base: _Indexable, index: np.ndarray):
        if isinstance(base, CorpusView):
            base, index = base.base, base.index[index]
        self.base, self.index = base, np.asarray(index, dtype=np.int64)
        self.n_channels, self.window_length = base.n_channels, base.window_length

    def __len__(self) -> int:
        return int(self.index.size)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        return self.base[self.index[idx]]


def expand_paths(specs: Iterable[str]) -> list[Path]:
    """Paths from command-line arguments: a glob pattern (``*``, ``?``, ``[``; e.g. a quoted ``'corpus/shard_*'``)
    becomes its sorted matches, anything else stays as given. FileNotFoundError for a pattern matching nothing."""
    out: list[Path] = []
    for spec in specs:
        spec = str(spec)
        if _GLOB_CHARS & set(spec) and not Path(spec).exists():
            matches = sorted(glob.glob(spec))
            if not matches:
                raise FileNotFoundError(f"the pattern {spec!r} matches no files or folders")
            out.extend(Path(m) for m in matches)
        else:
            out.append(Path(spec))
    return out


def _folder_sources(folder: Path) -> list[ShardSource]:
    if (folder / "X.npy").is_file():
        return [ShardSource(folder)]
    # hidden names are temp folders of an unfinished atomic write (flowfm.data.atomic): never part of the corpus
    shards = sorted(p for p in folder.iterdir()
                    if not p.name.startswith(".") and p.is_dir() and (p / "X.npy").is_file())
    if not shards:
        raise FileNotFoundError(f"{folder} holds neither X.npy nor shard folders with an X.npy "
                                f"(it contains: {sorted(p.name for p in folder.iterdir())[:10] or 'nothing'})")
    return [ShardSource(p) for p in shards]


def check_source_unit(source: Source, unit: Optional[str] = None) -> Source:
    """Set ``source.per_g`` (the corpus divides the source's windows by it) after checking the source's magnitude
    against ``unit`` on :data:`~flowfm.data.units.CHECK_WINDOWS` evenly spaced windows
    (:func:`~flowfm.data.units.check_windows_unit`: None expects g, ``"g"`` forces, ``"m/s2"`` / ``"mg"``
    convert). UnitError names the source."""
    source.per_g = check_windows_unit(_SourceWindows(source), str(getattr(source, "_x_path", source.name)), unit)
    return source


class _SourceWindows:
    """A source's raw windows as an array-like (``len``, int-array indexing), for the unit check."""

    def __init__(self, source: Source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self.source.n_channels, self.source.window_length), dtype=np.float32)
        self.source.read(np.asarray(idx, dtype=np.int64), out, check_finite=False)  # NaN rows: skipped by the check
        return out


def open_corpus(specs: Iterable[str], recording_fs: Optional[float] = None,
                unit: Optional[str] = None) -> WindowCorpus:
    """The corpus named by ``flowfm pretrain --data`` arguments, in order.

    Each spec is ``"hapt"`` (UCI HAPT, in memory), a shard folder (``X.npy`` [+ ``pid.npy``, ``meta.json``]), a
    folder of shard folders (e.g. the output of ``flowfm shard``), a glob pattern of those, or a continuous
    recording (``.npy`` / ``.csv``, ``(T, C)`` in g at ``recording_fs`` Hz, resampled to 30 Hz, 10 s windows every
    5 s).

    ``unit`` (``--unit``) is the unit of every source but HAPT (which is in g): None, each source must look like g
    by magnitude; ``"g"``, used as is; ``"m/s2"`` / ``"mg"``, converted to g when read
    (:func:`check_source_unit`, a bounded read of each source).

    Raises:
        FileNotFoundError: a missing path, a pattern with no match, a folder without windows.
        ValueError: a recording without ``recording_fs``, an unknown file type, sources that disagree on C / L / fs;
            :class:`~flowfm.data.units.UnitError` for a source whose magnitude contradicts ``unit`` (names it and
            the ``--unit`` flag).
    """
    unit = canonical_unit(unit)
    sources: list[Source] = []
    for spec in specs:
        if str(spec) == "hapt":
            from .hapt import load_hapt

            ds = load_hapt()
            sources.append(ArraySource(ds.x, "hapt", ds.fs, pid=ds.pid))
            continue
        for path in expand_paths([spec]):
            if path.is_dir():
                sources.extend(check_source_unit(src, unit) for src in _folder_sources(path))
            elif path.suffix.lower() in RECORDING_SUFFIXES and path.is_file():
                if recording_fs is None:
                    raise ValueError(f"{path} is a continuous recording: state its sampling rate with "
                                     "--recording-fs HZ (e.g. --recording-fs 100)")
                sources.append(check_source_unit(RecordingSource(path, recording_fs), unit))
            elif not path.exists():
                raise FileNotFoundError(f"{path} does not exist (expected 'hapt', a folder with X.npy, a folder of "
                                        "shard folders, or a .npy/.csv recording)")
            else:
                raise ValueError(f"{path}: expected a folder with X.npy or a .npy/.csv recording, got a "
                                 f"'{path.suffix}' file")
    return WindowCorpus(sources)
