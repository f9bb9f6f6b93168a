"""The restricted unpickler: foreign globals are refused before anything runs; legacy pandas frames rebuild."""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from flowfm.data.restricted_pickle import (PickledFrame, frame_to_columns, restricted_loads)


# ------------------------------------------------------------------------------------------ refusals
class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _marker_cmd(marker):
    return f"touch {marker}"


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_foreign_globals_are_refused_and_nothing_runs(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Evil(os.system, _marker_cmd(marker))
    elif kind == "builtins.eval":
        payload = _Evil(eval, f"__import__('os').system({_marker_cmd(marker)!r})")
    else:
        payload = _Evil(subprocess.Popen, ["touch", str(marker)])
    data = pickle.dumps({"frames": [payload]}, protocol=protocol)
    expected_name = {"os.system": "(os|posix).system", "builtins.eval": "(builtins|__builtin__).eval",
                     "subprocess.Popen": "(subprocess|commands).Popen"}[kind]
    with pytest.raises(pickle.UnpicklingError, match=rf"refused global '{expected_name}'"):
        restricted_loads(data)
    assert not marker.exists()


def test_py2_spelled_globals_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    for mod in ("__builtin__", "os", "posix", "nt"):
        name = "system" if mod != "__builtin__" else "eval"
        arg = f"touch {marker}" if name == "system" else f"__import__('os').system('touch {marker}')"
        data = f"c{mod}\n{name}\n(V{arg}\ntR.".encode()
        with pytest.raises(pickle.UnpicklingError, match=rf"refused global '{mod}.{name}'"):
            restricted_loads(data)
    assert not marker.exists()


def test_allowed_globals_cannot_be_abused():
    # a numpy subclass (MaskedArray) and non-latin1 codecs are refused even though their globals are known
    with pytest.raises(pickle.UnpicklingError, match="numpy.ma"):
        restricted_loads(pickle.dumps(np.ma.masked_array([1.0, 2.0]), protocol=2))
    data = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(pickle.UnpicklingError, match="_codecs.encode"):
        restricted_loads(data)


def test_plain_numpy_arrays_pickled_by_numpy_load():
    for arr in (np.arange(12.0).reshape(3, 4), np.arange(5, dtype=np.int64), np.array([True, False])):
        back = restricted_loads(pickle.dumps({"a": arr, "s": slice(1, 5, 2)}, protocol=2))
        np.testing.assert_array_equal(back["a"], arr)
        assert back["a"].dtype == arr.dtype and back["s"] == slice(1, 5, 2)


# ------------------------------------------------------------------- a synthetic legacy pandas pickle
class G:
    """A global reference, emitted with the GLOBAL opcode (exactly as protocol 2 writes it)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args


class Build:
    def __init__(self, obj, state):
        self.obj, self.state = obj, state


def _ndarray(a):
    kind_flags = {"O": ("|", 63)}.get(a.dtype.kind, ("<", 0))
    descr = {"O": "O8", "f": f"f{a.dtype.itemsize}", "i": f"i{a.dtype.itemsize}"}[a.dtype.kind]
    dt = Build(Call(G("numpy", "dtype"), descr, 0, 1), (3, kind_flags[0], None, None, None, -1, -1, kind_flags[1]))
    arr = Call(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    data = list(a.ravel()) if a.dtype.kind == "O" else a.tobytes()
    return Build(arr, (1, a.shape, dt, False, data))


def _emit(v, out):
    if isinstance(v, G):
        out += f"c{v.module}\n{v.name}\n".encode()
    elif isinstance(v, Call):
        _emit(v.func, out)
        _emit(tuple(v.args), out)
        out += b"R"
    elif isinstance(v, Build):
        _emit(v.obj, out)
        _emit(v.state, out)
        out += b"b"
    elif v is None:
        out += b"N"
    elif v is True or v is False:
        out += b"\x88" if v else b"\x89"
    elif isinstance(v, (int, np.integer)):
        out += b"J" + struct.pack("<i", int(v))
    elif isinstance(v, str):
        enc = v.encode("utf-8")
        out += b"X" + struct.pack("<I", len(enc)) + enc
    elif isinstance(v, bytes):  # protocol 2 from Python 3 stores bytes as _codecs.encode(str, 'latin1')
        _emit(Call(G("_codecs", "encode"), v.decode("latin-1"), "latin1"), out)
    elif isinstance(v, tuple):
        out += b"("
        for item in v:
            _emit(item, out)
        out += b"t"
    elif isinstance(v, list):
        out += b"]("
        for item in v:
            _emit(item, out)
        out += b"e"
    elif isinstance(v, dict):
        out += b"}("
        for k, item in v.items():
            _emit(k, out)
            _emit(item, out)
        out += b"u"
    elif isinstance(v, slice):
        _emit(Call(G("__builtin__", "slice"), v.start, v.stop, v.step), out)
    elif isinstance(v, np.ndarray):
        _emit(_ndarray(v), out)
    else:
        raise TypeError(type(v))


def _dumps(v):
    out = bytearray(b"\x80\x02")
    _emit(v, out)
    return bytes(out + b".")


def _legacy_frame(columns, manager_module="pandas.core.internals.managers"):
    """A pandas DataFrame as pandas pickles it at protocol 2 (two blocks: floats and ints)."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    new_index = G("pandas.core.indexes.base", "_new_Index")
    col_index = Call(new_index, G("pandas.core.indexes.base", "Index"),
                     {"data": np.array(names, dtype=object), "name": None})
    row_index = Call(new_index, G("pandas.core.indexes.range", "RangeIndex"),
                     {"name": None, "start": 0, "stop": n, "step": 1})
    f_pos = [i for i, k in enumerate(names) if columns[k].dtype.kind == "f"]
    i_pos = [i for i, k in enumerate(names) if columns[k].dtype.kind == "i"]
    f_vals = np.stack([columns[names[i]] for i in f_pos])
    i_vals = np.stack([columns[names[i]] for i in i_pos])
    blocks = [{"values": f_vals, "mgr_locs": np.array(f_pos, dtype=np.int64)},
              {"values": i_vals, "mgr_locs": slice(i_pos[0], i_pos[-1] + 1, i_pos[1] - i_pos[0])}]
    axes = [col_index, row_index]
    recon, obj = G("copy_reg", "_reconstructor"), G("__builtin__", "object")
    manager = Build(Call(recon, G(manager_module, "BlockManager"), obj, None),
                    (axes, [f_vals, i_vals], [], {"0.14.1": {"axes": axes, "blocks": blocks}}))
    return Build(Call(recon, G("pandas.core.frame", "DataFrame"), obj, None),
                 {"_data": manager, "_typ": "dataframe", "_metadata": []})


@pytest.mark.parametrize("manager_module", ["pandas.core.internals.managers", "pandas.core.internals"])
def test_synthetic_legacy_pandas_pickle_rebuilds_columns(manager_module):
    rng = np.random.default_rng(0)
    cols = {"acc-x": rng.standard_normal(50), "label": rng.integers(-1, 13, 50),
            "acc-y": rng.standard_normal(50), "sequence": np.arange(50, dtype=np.int64)}
    data = _dumps({1: [_legacy_frame(cols, manager_module)], 2: []})
    had_pandas = "pandas" in sys.modules
    obj = restricted_loads(data)
    assert set(obj) == {1, 2} and isinstance(obj[1][0], PickledFrame)
    out = frame_to_columns(obj[1][0])
    assert list(out) == list(cols)  # column order preserved across the two blocks
    for k, v in cols.items():
        np.testing.assert_array_equal(out[k], v)
        assert out[k].dtype == v.dtype
    if not had_pandas:
        assert "pandas" not in sys.modules  # stand-ins only, pandas never imported


def test_synthetic_pickle_with_a_foreign_global_inside_is_refused():
    frame = _legacy_frame({"a": np.zeros(3), "b": np.zeros(3, dtype=np.int64), "c": np.ones(3, dtype=np.int64)})
    frame.state["_data"].state = Call(G("os", "system"), "true")
    with pytest.raises(pickle.UnpicklingError, match="refused global 'os.system'"):
        restricted_loads(_dumps({1: [frame]}))
