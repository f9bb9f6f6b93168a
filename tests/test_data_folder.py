"""WindowDataset, validate_windows, the on-disk folder layout, its errors, and atomic saves."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from flowfm.data import (UNLABELLED, WindowDataset, check_subjectwise, load_folder, save_folder,
                         validate_windows)
from flowfm.data import atomic, windows
from flowfm.data.atomic import atomic_dir, atomic_open, atomic_write_bytes, atomic_write_text


def _dataset(n=12, c=3, length=300, labels="int", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, length)).astype(np.float32)
    pid = np.repeat(np.arange(n // 4 + 1), 4)[:n] + 101
    y = None
    if labels == "int":
        y = rng.integers(-1, 3, size=n)
    elif labels == "str":
        y = rng.choice(["walk", "sit", ""], size=n)
    return WindowDataset(x=x, pid=pid, y=y, label_names={0: "a", 1: "b", 2: "c"} if labels == "int" else None,
                         fs=30.0)


def _write(folder, x_disk, pid=None, y=None):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X.npy", x_disk)
    n = x_disk.shape[0] if x_disk.ndim else 1
    np.save(folder / "pid.npy", np.arange(n) % 3 if pid is None else pid)
    if y is not None:
        np.save(folder / "Y.npy", y)
    return folder


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------- WindowDataset
def test_window_dataset_basics():
    ds = _dataset()
    assert len(ds) == 12 and ds.n_channels == 3 and ds.window_length == 300
    assert ds.subjects.tolist() == [101, 102, 103]
    lab = ds.labelled()
    assert (lab.y != UNLABELLED).all() and len(lab) == int((ds.y != UNLABELLED).sum())
    np.testing.assert_array_equal(lab.x, ds.x[ds.y != UNLABELLED])
    sub = ds.subset(np.array([5, 0, 5]))
    np.testing.assert_array_equal(sub.x, ds.x[[5, 0, 5]])
    assert sub.pid.tolist() == ds.pid[[5, 0, 5]].tolist() and sub.label_names == ds.label_names
    mask = ds.pid == 102
    assert ds.subset(mask).subjects.tolist() == [102]
    assert len(ds.subset(np.zeros(12, dtype=bool))) == 0
    assert "N=12" in repr(ds)
    with pytest.raises(ValueError, match="no labels"):
        _dataset(labels=None).labelled()
    with pytest.raises(ValueError, match="shape"):
        ds.subset(np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="pid"):
        WindowDataset(x=ds.x, pid=ds.pid[:-1])
    str_ds = _dataset(labels="str")
    assert set(str_ds.labelled().y.tolist()) <= {"walk", "sit"}


def test_validate_windows():
    x = np.zeros((4, 3, 32), dtype=np.float32)
    assert validate_windows(x) is x  # float32 passes through without a copy
    assert validate_windows(x.astype(np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match="rank 3"):
        validate_windows(np.zeros((4, 32)))
    with pytest.raises(ValueError, match=r"L = 15 .*L >= 16"):
        validate_windows(np.zeros((4, 3, 15)))
    with pytest.raises(ValueError, match="no windows"):
        validate_windows(np.zeros((0, 3, 32)))
    bad = x.copy()
    bad[2, 1, 7] = np.nan
    bad[3, 0, 0] = np.inf
    bad[3, 2, 5] = np.nan
    with pytest.raises(ValueError, match=r"3 non-finite value\(s\) \(2 NaN, 1 inf\).*index \(2, 1, 7\)"):
        validate_windows(bad, "batch")


def test_nonfinite_check_is_chunked_and_reports_global_position(monkeypatch):
    monkeypatch.setattr(windows, "_CHUNK_BYTES", 3 * 32 * 4 * 2)  # 2 windows per chunk
    x = np.zeros((9, 3, 32), dtype=np.float32)
    x[7, 2, 30] = -np.inf
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) \(0 NaN, 1 inf\).*index \(7, 2, 30\)"):
        validate_windows(x)


# ------------------------------------------------------------------------------------------- folder layout
@pytest.mark.parametrize("labels", ["int", "str", None])
def test_round_trip_channels_last_on_disk(tmp_path, labels):
    ds = _dataset(labels=labels)
    out = save_folder(ds, tmp_path / "ds")
    on_disk = np.load(out / "X.npy")
    assert on_disk.shape == (12, 300, 3) and on_disk.dtype == np.float32  # the field's (N, L, C)
    np.testing.assert_array_equal(on_disk, ds.x.transpose(0, 2, 1))
    assert json.loads((out / "meta.json").read_text())["fs"] == 30.0
    back = load_folder(out)
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.pid, ds.pid)
    if labels is None:
        assert back.y is None and not (out / "Y.npy").exists()
    else:
        np.testing.assert_array_equal(back.y, ds.y)
    assert back.label_names == ds.label_names and back.fs == 30.0
    assert _leftovers(tmp_path) == []


def test_memmap_is_used(tmp_path):
    save_folder(_dataset(n=40), tmp_path / "ds")
    ds = load_folder(tmp_path / "ds")
    base = ds.x
    while not isinstance(base, np.memmap) and getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, np.memmap), "X.npy should be memory-mapped, not read into memory"
    assert not ds.x.flags.writeable
    assert ds.x.shape == (40, 3, 300)
    plain = load_folder(tmp_path / "ds", mmap=False)
    assert not isinstance(plain.x, np.memmap)
    np.testing.assert_array_equal(plain.x, ds.x)


def test_channels_first_on_disk_and_forced_layouts(tmp_path):
    x = np.random.default_rng(0).standard_normal((6, 3, 300)).astype(np.float32)
    f = _write(tmp_path / "cf", x)
    np.testing.assert_array_equal(load_folder(f).x, x)  # auto: the axis of size 3 is C
    np.testing.assert_array_equal(load_folder(f, layout="channels_first").x, x)
    with pytest.raises(ValueError, match="too short: L = 3"):  # forced (N, L=3, C=300)
        load_folder(f, layout="channels_last")
    g = _write(tmp_path / "amb", np.zeros((6, 40, 50), dtype=np.float32))
    with pytest.raises(ValueError, match="layout='channels_last'"):
        load_folder(g)
    assert load_folder(g, layout="channels_last").x.shape == (6, 50, 40)
    assert load_folder(g, layout="channels_first").x.shape == (6, 40, 50)
    with pytest.raises(ValueError, match="layout must be one of"):
        load_folder(g, layout="NLC")


def test_many_channels_round_trip_uses_meta_layout(tmp_path):
    ds = _dataset(c=12, length=64)  # 12 channels: ambiguous for 'auto' without meta.json
    save_folder(ds, tmp_path / "ds")
    np.testing.assert_array_equal(load_folder(tmp_path / "ds").x, ds.x)
    (tmp_path / "ds" / "meta.json").unlink()
    with pytest.raises(ValueError, match="cannot tell"):
        load_folder(tmp_path / "ds")


def test_missing_files_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="X.npy"):
        load_folder(tmp_path / "empty")
    f = _write(tmp_path / "nopid", np.zeros((4, 300, 3), dtype=np.float32))
    (f / "pid.npy").unlink()
    with pytest.raises(FileNotFoundError, match="pid.npy"):
        load_folder(f)
    g = _write(tmp_path / "nolab", np.zeros((4, 300, 3), dtype=np.float32))
    assert load_folder(g).y is None
    with pytest.raises(FileNotFoundError, match="Y.npy"):
        load_folder(g, require_labels=True)


def test_bad_inputs_give_clear_errors(tmp_path):
    ok = np.zeros((5, 300, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="rank 3.*got rank 2"):
        load_folder(_write(tmp_path / "rank", np.zeros((5, 300), dtype=np.float32)))
    nan = ok.copy()
    nan[3, 10, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) \(1 NaN, 0 inf\).*index \(3, 1, 10\)"):
        load_folder(_write(tmp_path / "nan", nan))
    inf = ok.copy()
    inf[0, 0, 2] = -np.inf
    with pytest.raises(ValueError, match=r"\(0 NaN, 1 inf\)"):
        load_folder(_write(tmp_path / "inf", inf))
    with pytest.raises(ValueError, match=r"too short: L = 10.*L >= 16"):
        load_folder(_write(tmp_path / "short", np.zeros((5, 10, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="Y.npy has 4 entries but X.npy has 5 windows"):
        load_folder(_write(tmp_path / "ylen", ok, y=np.zeros(4, dtype=int)))
    with pytest.raises(ValueError, match="pid.npy has 6 entries but X.npy has 5 windows"):
        load_folder(_write(tmp_path / "pidlen", ok, pid=np.zeros(6, dtype=int)))
    with pytest.raises(TypeError, match="floats"):
        load_folder(_write(tmp_path / "str", np.full((5, 300, 3), "a")))
    obj = _write(tmp_path / "obj", ok)
    np.save(obj / "Y.npy", np.array(["a", 1, "b", "c", "d"], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled object array"):
        load_folder(obj)
    assert load_folder(obj, allow_pickle=True).y.tolist() == ["a", 1, "b", "c", "d"]


def test_check_subjectwise(tmp_path):
    ds = load_folder(_write(tmp_path / "one", np.zeros((5, 300, 3), dtype=np.float32), pid=np.full(5, 7)))
    with pytest.raises(ValueError, match="at least 2 distinct subjects.*has 1: \\[7\\]"):
        check_subjectwise(ds)
    assert check_subjectwise(_dataset()).tolist() == [101, 102, 103]
    with pytest.raises(ValueError, match="at least 4"):
        check_subjectwise(_dataset(), min_subjects=4)


# ------------------------------------------------------------------------------------------- atomic saves
def _fail_on_call(monkeypatch, k):
    real = np.save
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "save", flaky)
    return calls


def test_interrupted_save_leaves_no_partial_folder(tmp_path, monkeypatch):
    ds = _dataset()
    calls = _fail_on_call(monkeypatch, 2)
    with pytest.raises(OSError, match="simulated"):
        save_folder(ds, tmp_path / "ds")
    assert calls["n"] == 2
    assert not (tmp_path / "ds").exists() and _leftovers(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_dataset(tmp_path, monkeypatch):
    old = _dataset(seed=1)
    save_folder(old, tmp_path / "ds")
    _fail_on_call(monkeypatch, 2)
    with pytest.raises(OSError, match="simulated"):
        save_folder(_dataset(seed=2, n=8), tmp_path / "ds")
    monkeypatch.undo()
    back = load_folder(tmp_path / "ds", mmap=False)
    np.testing.assert_array_equal(back.x, old.x)
    np.testing.assert_array_equal(back.y, old.y)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False])
def test_overwrite_replaces_completely(tmp_path, monkeypatch, exchange):
    if not exchange:  # the portable two-rename fallback
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    save_folder(_dataset(seed=1), tmp_path / "ds")
    assert (tmp_path / "ds" / "Y.npy").is_file()
    new = _dataset(seed=2, n=8, labels=None)
    save_folder(new, tmp_path / "ds")   # the old Y.npy must not survive beside unlabelled windows
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["X.npy", "meta.json", "pid.npy"]
    np.testing.assert_array_equal(load_folder(tmp_path / "ds").x, new.x)
    assert _leftovers(tmp_path) == []
    with pytest.raises(FileExistsError):
        save_folder(new, tmp_path / "ds", overwrite=False)
    (tmp_path / "ds" / "notes.txt").write_text("not the dataset's")
    with pytest.raises(FileExistsError, match="notes.txt"):   # never deleted by a replacement
        save_folder(new, tmp_path / "ds")
    assert (tmp_path / "ds" / "notes.txt").is_file()


def test_atomic_file_writes(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with atomic_open(p, "wb") as f:
            f.write(b"half")
            raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"one" and _leftovers(p.parent) == []
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "a").write_text("x")
            raise ValueError("boom")
    assert not (tmp_path / "d").exists() and _leftovers(tmp_path) == []
    p2 = tmp_path / "file"
    p2.write_text("not a folder")
    with pytest.raises(FileExistsError, match="not a directory"):
        with atomic_dir(p2):
            pass


# ------------------------------------------------------------------------------------------------------ units
def _gravity_windows(n=10, length=64, seed=0):
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((n, 3, length)) + np.array([0.0, 0.0, 1.0])[:, None]
    return x.astype(np.float32)


@pytest.mark.parametrize("unit, per_g, looks", [("m/s2", 9.80665, r"m/s\^2"), ("mg", 1000.0, "milli-g")])
def test_load_folder_refuses_other_units_and_converts_on_request(tmp_path, unit, per_g, looks):
    x = _gravity_windows()
    save_folder(WindowDataset(x=x * np.float32(per_g), pid=np.arange(10) % 3, fs=30.0), tmp_path / "d")
    with pytest.raises(ValueError, match=rf"d/X.npy: acceleration looks like {looks} \(median \|a\| = [0-9.]+; "
                                         rf"expected ~1 g\)\. Pass --unit {unit} to convert, or --unit g"):
        load_folder(tmp_path / "d")
    ds = load_folder(tmp_path / "d", unit=unit)
    raw = np.load(tmp_path / "d" / "X.npy").astype(np.float64).transpose(0, 2, 1)
    np.testing.assert_allclose(ds.x, raw / per_g, rtol=1e-6)
    assert ds.x.dtype == np.float32
    forced = load_folder(tmp_path / "d", unit="g")  # --unit g: as is
    np.testing.assert_array_equal(forced.x, raw.astype(np.float32))
    with pytest.raises(ValueError, match="unknown unit 'furlongs'"):
        load_folder(tmp_path / "d", unit="furlongs")


def test_load_folder_in_g_passes_and_a_wrong_flag_is_caught(tmp_path):
    save_folder(WindowDataset(x=_gravity_windows(), pid=np.arange(10) % 3, fs=30.0), tmp_path / "g")
    assert isinstance(load_folder(tmp_path / "g").x, np.memmap)  # unchanged, still memory-mapped
    with pytest.raises(ValueError, match=r"looks like g .*--unit g"):
        load_folder(tmp_path / "g", unit="mg")
