"""A restricted unpickler for legacy pandas pickles, rebuilt as plain numpy arrays without importing pandas.

Why: a pickle names Python callables ("globals") that ``pickle.load`` imports and calls, so loading an
untrusted pickle runs arbitrary code (``os.system``, ``builtins.eval``, ...). HAPT ships as a pandas pickle
(protocol 2, Python-2 style names) that modern pandas cannot even read. :class:`RestrictedUnpickler` resolves
only an explicit allow-list of globals and refuses everything else with :class:`pickle.UnpicklingError`
*before* anything is called. The pandas classes on the list are mapped to small local stand-ins that merely
record their reconstruction arguments and state; :func:`frame_to_columns` then rebuilds ``{column: 1-D array}``
from the recorded ``BlockManager`` state.

The allow-list for legacy pandas DataFrames (:data:`PANDAS_FRAME_GLOBALS`) covers exactly::

    copy_reg._reconstructor            -> _reconstructor (only builds the local stand-ins below)
    __builtin__.object                 -> object
    __builtin__.slice                  -> slice
    _codecs.encode                     -> latin-1 str -> bytes only (how protocol 2 stores bytes)
    numpy.core.multiarray._reconstruct -> numpy's array reconstructor, plain ndarray subtype only
    numpy.ndarray, numpy.dtype         -> numpy (dtype restricted to plain numeric/bool/str/object kinds)
    pandas.core.frame.DataFrame                          -> PickledFrame
    pandas.core.internals(.managers).BlockManager        -> PickledBlockManager
    pandas.core.indexes.base.Index / ._new_Index         -> PickledIndex / _new_index
    pandas.core.indexes.range.RangeIndex                 -> PickledRangeIndex

(plus the Python-3 spellings ``copyreg``/``builtins``/``numpy._core.multiarray`` of the same objects).
"""
from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO, Mapping

import numpy as np

__all__ = [
    "RestrictedUnpickler",
    "restricted_load",
    "restricted_loads",
    "PANDAS_FRAME_GLOBALS",
    "PickledFrame",
    "PickledBlockManager",
    "PickledIndex",
    "PickledRangeIndex",
    "frame_to_columns",
    "index_values",
]


# ----------------------------------------------------------------------------------------------------------
# Stand-ins for the pandas classes: they record, they never import or call pandas.
# ----------------------------------------------------------------------------------------------------------
class _Recorder:
    """Base of the stand-ins: keeps the pickled state as-is in ``self.state``."""

    pandas_name = "?"

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:  # called by the BUILD opcode
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.pandas_name}>"


class PickledFrame(_Recorder):
    """Stand-in for ``pandas.DataFrame``; ``state`` is its ``__dict__`` (``{'_data': BlockManager, ...}``)."""

    pandas_name = "pandas.DataFrame"

    @property
    def manager(self) -> "PickledBlockManager":
        st = self.state
        if not isinstance(st, dict):
            raise pickle.UnpicklingError(f"DataFrame state is a {type(st).__name__}, expected a dict")
        mgr = st.get("_data", st.get("_mgr"))
        if not isinstance(mgr, PickledBlockManager):
            raise pickle.UnpicklingError("DataFrame state holds no BlockManager under '_data' or '_mgr'")
        return mgr


class PickledBlockManager(_Recorder):
    """Stand-in for ``pandas.core.internals.BlockManager``.

    ``state`` (pandas >= 0.14.1) is ``(axes, block_values, block_items, {"0.14.1": {"axes": axes,
    "blocks": [{"values": (n_items, n_rows) array, "mgr_locs": slice | int array}, ...]}})`` where
    ``axes = [column Index, row index]``. Older pickles hold only the first three entries.
    """

    pandas_name = "pandas.BlockManager"


class PickledIndex(_Recorder):
    """Stand-in for ``pandas.Index``; built by :func:`_new_index` with ``{'data': ndarray, 'name': ...}``."""

    pandas_name = "pandas.Index"

    def __init__(self, attrs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.attrs = dict(attrs or {})


class PickledRangeIndex(PickledIndex):
    """Stand-in for ``pandas.RangeIndex``; attrs ``{'start', 'stop', 'step', 'name'}``."""

    pandas_name = "pandas.RangeIndex"


_STAND_INS = (PickledFrame, PickledBlockManager, PickledIndex, PickledRangeIndex)


def _reconstructor(cls: Any, base: Any, state: Any) -> _Recorder:
    """Replacement for ``copyreg._reconstructor`` that only instantiates the local stand-ins."""
    if cls not in _STAND_INS or base is not object or state is not None:
        raise pickle.UnpicklingError(
            f"refused copy_reg._reconstructor({cls!r}, {base!r}, ...): only the pandas stand-ins may be built"
        )
    return cls()


def _new_index(cls: Any, attrs: Any) -> PickledIndex:
    """Replacement for ``pandas.core.indexes.base._new_Index(cls, d)``."""
    if cls not in (PickledIndex, PickledRangeIndex) or not isinstance(attrs, dict):
        raise pickle.UnpicklingError(f"refused _new_Index({cls!r}, {type(attrs).__name__})")
    return cls(attrs)


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol 2 stores ``bytes`` as ``_codecs.encode(str, 'latin1')``: allow exactly that."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode(<{type(obj).__name__}>, {encoding!r})")
    return obj.encode("latin-1", errors)


_NP_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy(._)core.multiarray._reconstruct
_ALLOWED_DTYPE_KINDS = frozenset("biufcOSU")


def _ndarray_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` restricted to plain ``np.ndarray`` (no subclasses)."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused numpy _reconstruct of subtype {subtype!r}")
    return _NP_RECONSTRUCT(subtype, shape, dtype)


def _np_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` restricted to a type string of a plain kind (no structured/void dtypes)."""
    if not isinstance(obj, str):
        raise pickle.UnpicklingError(f"refused numpy.dtype({obj!r}): only type strings are allowed")
    dt = np.dtype(obj, align=bool(align), copy=bool(copy))
    if dt.kind not in _ALLOWED_DTYPE_KINDS:
        raise pickle.UnpicklingError(f"refused numpy.dtype({obj!r}) of kind {dt.kind!r}")
    return dt


def _pairs(modules: tuple[str, ...], name: str, obj: Any) -> dict[tuple[str, str], Any]:
    return {(m, name): obj for m in modules}


#: (module, name) -> object, for pandas DataFrames pickled at protocol 2 (HAPT.pkl.gz).
PANDAS_FRAME_GLOBALS: dict[tuple[str, str], Any] = {
    **_pairs(("copy_reg", "copyreg"), "_reconstructor", _reconstructor),
    **_pairs(("__builtin__", "builtins"), "object", object),
    **_pairs(("__builtin__", "builtins"), "slice", slice),
    **_pairs(("_codecs",), "encode", _codecs_encode),
    **_pairs(("numpy.core.multiarray", "numpy._core.multiarray"), "_reconstruct", _ndarray_reconstruct),
    **_pairs(("numpy",), "ndarray", np.ndarray),
    **_pairs(("numpy",), "dtype", _np_dtype),
    **_pairs(("pandas.core.frame",), "DataFrame", PickledFrame),
    **_pairs(("pandas.core.internals.managers", "pandas.core.internals"), "BlockManager", PickledBlockManager),
    **_pairs(("pandas.core.indexes.base",), "_new_Index", _new_index),
    **_pairs(("pandas.core.indexes.base",), "Index", PickledIndex),
    **_pairs(("pandas.core.indexes.range",), "RangeIndex", PickledRangeIndex),
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals in ``allowed`` (default :data:`PANDAS_FRAME_GLOBALS`).

    Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
    :class:`pickle.UnpicklingError` naming it, before it is imported or called. Persistent ids are refused too.
    ``encoding="latin1"`` decodes Python-2 ``str`` objects byte-for-byte.
    """

    def __init__(self, file: BinaryIO, *, allowed: Mapping[tuple[str, str], Any] | None = None,
                 encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = dict(PANDAS_FRAME_GLOBALS if allowed is None else allowed)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global '{module}.{name}': it is not in the allow-list of this restricted unpickler "
                f"(allowed: {', '.join(sorted({f'{m}.{n}' for m, n in self._allowed}))})"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"refused persistent id {pid!r}")


def restricted_load(file: BinaryIO, *, allowed: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle from a binary file object with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file, allowed=allowed).load()


def restricted_loads(data: bytes, *, allowed: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle from bytes with :class:`RestrictedUnpickler`."""
    return restricted_load(io.BytesIO(data), allowed=allowed)


# ----------------------------------------------------------------------------------------------------------
# Rebuilding plain arrays from the recorded state
# ----------------------------------------------------------------------------------------------------------
def index_values(index: Any) -> np.ndarray:
    """The values of a recorded Index / RangeIndex as a 1-D numpy array."""
    if isinstance(index, PickledRangeIndex):
        a = index.attrs
        return np.arange(int(a.get("start", 0)), int(a["stop"]), int(a.get("step", 1)))
    if isinstance(index, PickledIndex):
        data = index.attrs.get("data")
        if not isinstance(data, np.ndarray):
            raise pickle.UnpicklingError("pickled Index holds no 'data' array")
        return data
    if isinstance(index, np.ndarray):
        return index
    raise pickle.UnpicklingError(f"unsupported pickled index of type {type(index).__name__}")


def _locs_to_indexer(locs: Any, n_items: int) -> np.ndarray:
    if isinstance(locs, slice):
        return np.arange(n_items)[locs]
    if isinstance(locs, np.ndarray) and locs.dtype.kind in "iu":
        return locs.astype(np.int64).ravel()
    raise pickle.UnpicklingError(f"unsupported block mgr_locs of type {type(locs).__name__}")


def frame_to_columns(frame: PickledFrame) -> dict[str, np.ndarray]:
    """Rebuild ``{column name: (n_rows,) array}`` (in column order) from a recorded pandas DataFrame.

    Uses the ``"0.14.1"`` entry of the BlockManager state (axes + blocks with their item locations); for
    older pickles falls back to matching ``block_items`` against the column Index.
    """
    state = frame.manager.state
    if not isinstance(state, tuple) or len(state) < 3:
        raise pickle.UnpicklingError("BlockManager state is not the expected (axes, values, items, ...) tuple")
    extra = state[3] if len(state) > 3 and isinstance(state[3], dict) else {}
    columns_by_pos: dict[int, np.ndarray]
    if "0.14.1" in extra:
        axes = extra["0.14.1"]["axes"]
        names = [str(c) for c in index_values(axes[0])]
        n_rows = len(index_values(axes[1]))
        columns_by_pos = {}
        for blk in extra["0.14.1"]["blocks"]:
            values = np.asarray(blk["values"])
            if values.ndim == 1:
                values = values[None, :]
            locs = _locs_to_indexer(blk["mgr_locs"], len(names))
            if values.shape != (len(locs), n_rows):
                raise pickle.UnpicklingError(
                    f"block of shape {values.shape} does not match {len(locs)} items x {n_rows} rows")
            for row, pos in zip(values, locs):
                columns_by_pos[int(pos)] = row
    else:  # pre-0.14.1: (axes, block_values, block_items)
        axes, block_values, block_items = state[:3]
        names = [str(c) for c in index_values(axes[0])]
        pos_of = {n: i for i, n in enumerate(names)}
        columns_by_pos = {}
        for values, items in zip(block_values, block_items):
            values = np.asarray(values)
            for row, item in zip(values, index_values(items)):
                columns_by_pos[pos_of[str(item)]] = row
    missing = [names[i] for i in range(len(names)) if i not in columns_by_pos]
    if missing:
        raise pickle.UnpicklingError(f"no block holds column(s) {missing}")
    return {names[i]: columns_by_pos[i] for i in range(len(names))}
