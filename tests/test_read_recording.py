"""read_recordings / read_recording: tables with a clock (ISO or epoch s / ms), named axis columns, labels, subjects,
jitter, gaps, NaN runs and units, checked against an independent interpolation of the known signal."""
from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from flowfm.data.read_recording import has_clock, read_recording, read_recordings  # noqa: E402
from flowfm.data.units import STANDARD_GRAVITY, UnitError  # noqa: E402

START = pd.Timestamp("2024-05-01T10:00:00", tz="UTC")


def signal(t: np.ndarray) -> np.ndarray:
    """A smooth (T, 3) acceleration in g: slow enough that linear interpolation at 100 Hz is accurate to ~1e-4."""
    return np.stack([0.1 * np.sin(2 * np.pi * 0.7 * t), 0.2 * np.cos(2 * np.pi * 0.3 * t),
                     1 + 0.05 * np.sin(2 * np.pi * 0.2 * t)], axis=1)


def write_csv(path, *, fs=100.0, seconds=40.0, jitter=0.0005, gap_at_s=None, gap_s=5.0, unit_scale=1.0,
              clock="iso", columns=("timestamp", "Acc_X", "accel y", "AccZ"), labels=True, subject=None, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs + rng.uniform(-jitter, jitter, n)
    t[0] = 0.0
    if gap_at_s is not None:
        t[t >= gap_at_s] += gap_s
    x = signal(t) * unit_scale
    df = pd.DataFrame({columns[1]: x[:, 0], columns[2]: x[:, 1], columns[3]: x[:, 2]})
    if clock == "iso":
        df.insert(0, columns[0], (START + pd.to_timedelta(t, unit="s")).strftime("%Y-%m-%dT%H:%M:%S.%f"))
    elif clock == "epoch_ms":
        df.insert(0, columns[0], START.timestamp() * 1000 + t * 1000)
    else:
        df.insert(0, columns[0], t)
    if labels:
        df["activity"] = np.where(t < t[n // 2], "walking", "sitting")
    if subject is not None:
        df["subject"] = subject
    df.to_csv(path, index=False)
    return t, x


def test_iso_clock_jitter_and_units(tmp_path):
    path = tmp_path / "p01.csv"
    t, _ = write_csv(path, unit_scale=STANDARD_GRAVITY)
    with pytest.raises(UnitError, match=r"p01\.csv.*m/s\^2.*--unit m/s2"):
        read_recording(path)
    rec = read_recording(path, unit="m/s2")
    assert rec.fs == 100.0 and rec.subject == "p01" and rec.absolute_time and len(rec.segments) == 1
    seg = rec.segments[0]
    grid = np.arange(len(seg.signal)) / 100.0
    assert seg.start == pytest.approx(START.timestamp())
    # the uniform grid holds the known signal at the grid times (interpolated from the jittered clock)
    np.testing.assert_allclose(seg.signal, signal(grid), atol=2e-4)
    assert grid[-1] <= t[-1] < grid[-1] + 0.01
    assert set(np.unique(seg.labels)) == {"walking", "sitting"}


def test_epoch_ms_clock_gap_splits_and_windows(tmp_path):
    path = tmp_path / "rec.csv"
    write_csv(path, clock="epoch_ms", seconds=60.0, gap_at_s=30.0, gap_s=5.0)
    rec = read_recording(path, subject="s7")
    assert rec.subject == "s7" and rec.absolute_time and len(rec.segments) == 2
    assert rec.segments[1].start - rec.segments[0].start == pytest.approx(35.0, abs=0.02)
    x, start, y = rec.windows()
    # 30 s per segment -> 5 windows of 10 s with a 5 s hop each
    assert x.shape == (10, 3, 300) and x.dtype == np.float32
    np.testing.assert_allclose(np.diff(start[:5]), 5.0)
    assert start[5] == pytest.approx(rec.segments[1].start)
    assert set(y) <= {"walking", "sitting", ""} and (y == "walking").sum() >= 4


def test_relative_seconds_nan_run_and_explicit_axes(tmp_path):
    path = tmp_path / "rel.csv"
    write_csv(path, clock="seconds", columns=("t", "a", "b", "c"), labels=False)
    df = pd.read_csv(path)
    df.loc[500:520, "a"] = np.nan  # 0.2 s of dropped samples: bridged by the interpolation
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="no x / y / z acceleration columns"):
        read_recording(path)
    rec = read_recording(path, axes=["a", "b", "c"])
    assert not rec.absolute_time and len(rec.segments) == 1 and rec.segments[0].labels is None
    grid = np.arange(len(rec.segments[0].signal)) / rec.fs
    got, want = rec.segments[0].signal, signal(grid)
    inside = (grid > 4.98) & (grid < 5.22)  # the dropped rows 500-520 (t = 5.00-5.20 s): a chord over 0.22 s
    np.testing.assert_allclose(got[~inside], want[~inside], atol=2e-4)
    np.testing.assert_allclose(got[inside], want[inside], atol=0.02)  # chord error <= A (w d)^2 / 8 = 0.012


def test_subject_column_and_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(a, subject="S1", seed=1)
    write_csv(b, subject="S2", seed=2)
    both = pd.concat([pd.read_csv(a), pd.read_csv(b)])
    both.to_parquet(tmp_path / "all.parquet")
    recs = read_recordings(tmp_path / "all.parquet", subject_column="subject")
    assert [r.subject for r in recs] == ["S1", "S2"]
    with pytest.raises(ValueError, match="2 subjects"):
        read_recording(tmp_path / "all.parquet", subject_column="subject")


@pytest.mark.parametrize("mutate, message", [
    (lambda df: df.iloc[::-1], "not increasing"),
    (lambda df: df.iloc[:1], "at least 2"),
    (lambda df: df.drop(columns=["timestamp"]), "no time column"),
    (lambda df: df.assign(Acc_X="abc"), "holds no numbers"),
])
def test_bad_tables_give_clear_errors(tmp_path, mutate, message):
    path = tmp_path / "bad.csv"
    write_csv(path, seconds=5.0)
    mutate(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        read_recording(path)


def test_repeated_timestamps_refused(tmp_path):
    path = tmp_path / "dup.csv"
    write_csv(path, clock="seconds", seconds=5.0, jitter=0.0)
    df = pd.read_csv(path)
    df.loc[10, "timestamp"] = df.loc[9, "timestamp"]
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="row 11"):
        read_recording(path)


def test_has_clock(tmp_path):
    write_csv(tmp_path / "c.csv", seconds=2.0)
    np.savetxt(tmp_path / "plain.csv", np.ones((5, 3)), delimiter=",")
    assert has_clock(tmp_path / "c.csv") and not has_clock(tmp_path / "plain.csv")
