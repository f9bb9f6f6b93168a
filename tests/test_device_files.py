"""Device files through actipy (flowfm.data.device_files): a GENEActiv .bin (a text format, so the test writes one
from a known signal), calibration and non-wear passed through, and the errors a user without actipy / Java sees."""
import datetime as dt
import json
import shutil
import sys

import numpy as np
import pytest

from flowfm.data.device_files import is_device_file, read_device_file
from flowfm.data.read_recording import has_clock, read_recordings

actipy = pytest.importorskip("actipy")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="actipy's device parsers need Java")
FS = 100.0
START = "2024-01-01 10:00:00"


def write_geneactiv_bin(path, xyz_g, gain=25600, offset=0, serial="FLOWFM01"):
    """GENEActiv's .bin layout: 59 header lines (calibration at lines 48-53, page count at 58), then pages of 10
    lines whose last is 300 samples x 12 hex digits (x, y, z as 12-bit two's complement, then light/button);
    g = (raw * 100 - offset) / gain. Temperature varies per page as on a worn device."""
    n = (len(xyz_g) // 300) * 300
    raw = np.clip(np.round((xyz_g[:n] * gain + offset) / 100.0), -2048, 2047).astype(int)
    pages = n // 300
    head = ["Device Identity", f"Device Unique Serial Code:{serial}"] + [f"Header {i}:" for i in range(2, 47)]
    head += [f"x gain:{gain}", f"x offset:{offset}", f"y gain:{gain}", f"y offset:{offset}", f"z gain:{gain}",
             f"z offset:{offset}", "Volts:300", "Lux:800", "", "Memory Status", f"Number of Pages:{pages}"]
    lines = head + [""] * (59 - len(head))
    t0 = dt.datetime.fromisoformat(START)
    for p in range(pages):
        t = t0 + dt.timedelta(seconds=p * 300 / FS)
        stamp = t.strftime("%Y-%m-%d %H:%M:%S:") + f"{t.microsecond // 1000:03d}"
        payload = "".join("%03X%03X%03X000" % (x & 0xFFF, y & 0xFFF, z & 0xFFF) for x, y, z in raw[p * 300:(p + 1) * 300])
        lines += ["Recorded Data", f"Device Unique Serial Code:{serial}", f"Sequence Number:{p}",
                  f"Page Time:{stamp}", "Unassigned:", f"Temperature:{24 + (p % 7) * 0.5:.1f}",
                  "Battery voltage:4.0", "Device Status:Recording", f"Measurement Frequency:{FS}", payload]
    path.write_text("\r\n".join(lines) + "\r\n")
    return xyz_g[:n]


def moving(n, rng):
    t = np.arange(n) / FS
    return np.stack([0.3 * np.sin(2 * np.pi * 2 * t), 0.2 * np.cos(2 * np.pi * t),
                     1 + 0.1 * rng.standard_normal(n)], 1)


def test_suffixes_are_recognised():
    for name in ("a.cwa", "A.CWA.gz", "b.gt3x", "c.bin", "c.bin.zip"):
        assert is_device_file(name), name
    for name in ("a.csv", "a.npy", "binary.csv", "a.cwa.csv"):
        assert not is_device_file(name), name


@needs_java
def test_geneactiv_round_trip_without_processing(tmp_path):
    written = write_geneactiv_bin(tmp_path / "s07.bin", moving(int(FS * 60), np.random.default_rng(0)))
    rec = read_device_file(tmp_path / "s07.bin", calibrate=False, detect_nonwear=False, lowpass_hz=None)
    assert rec.subject == "s07" and rec.fs == FS and rec.absolute_time and rec.unit == "g"
    assert len(rec.segments) == 1
    seg = rec.segments[0]
    assert seg.start == dt.datetime.fromisoformat(START).replace(tzinfo=dt.timezone.utc).timestamp()
    np.testing.assert_allclose(seg.signal, written[:len(seg.signal)], atol=1 / 256)  # one 12-bit quantum
    assert rec.info["Device"] == "GENEActiv" and rec.info["DeviceID"] == "FLOWFM01"
    json.dumps(rec.info, allow_nan=False)  # actipy's NaN fields made JSON-safe
    assert has_clock(tmp_path / "s07.bin")
    assert read_recordings(tmp_path / "s07.bin", calibrate=False, detect_nonwear=False)[0].n_samples == rec.n_samples


@needs_java
def test_nonwear_splits_the_recording(tmp_path):
    rng = np.random.default_rng(1)
    still = np.tile([0.0, 0.0, 1.0], (int(FS * 240), 1))
    write_geneactiv_bin(tmp_path / "nw.bin", np.concatenate([moving(int(FS * 180), rng), still,
                                                              moving(int(FS * 180), rng)]))
    worn = read_device_file(tmp_path / "nw.bin", nonwear_patience="2m")
    assert len(worn.segments) == 2 and worn.info["NumNonwearEpisodes"] == 1
    t0 = worn.segments[0].start
    end_first = t0 + len(worn.segments[0].signal) / FS
    # actipy flags whole 10 s epochs: all of the 180-420 s bout but its last epoch is gone
    assert end_first <= t0 + 181 and worn.segments[1].start >= t0 + 400
    x, start, _ = worn.windows(30.0, 10.0, 5.0)
    assert len(x) and not np.any((start + 10 > t0 + 181) & (start < t0 + 400))  # no window straddles non-wear
    kept = read_device_file(tmp_path / "nw.bin", detect_nonwear=False)
    assert len(kept.segments) == 1 and kept.n_samples == int(FS * 600)


@needs_java
def test_calibration_is_passed_through(tmp_path):
    rng = np.random.default_rng(2)
    dirs = rng.standard_normal((12, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    true = np.concatenate([np.tile(d, (int(FS * 60), 1)) for d in dirs]) + 0.002 * rng.standard_normal((7200 * 10, 3))
    write_geneactiv_bin(tmp_path / "cal.bin", true * [1.06, 0.96, 1.0] + [0.0, 0.04, -0.05])  # gain + offset error
    errors = {}
    for calibrate in (False, True):
        rec = read_device_file(tmp_path / "cal.bin", calibrate=calibrate, detect_nonwear=False)
        sig = np.concatenate([s.signal for s in rec.segments])
        errors[calibrate] = float(np.abs(np.linalg.norm(sig, axis=1) - 1).mean())
    assert rec.info["CalibOK"] == 1 and rec.info["CalibErrorAfter(mg)"] < rec.info["CalibErrorBefore(mg)"]
    assert errors[True] < errors[False] / 5, errors


@needs_java
def test_prepare_writes_a_window_folder_with_the_device_report(tmp_path):
    from flowfm.cli import main

    write_geneactiv_bin(tmp_path / "p1.bin", moving(int(FS * 90), np.random.default_rng(3)))
    assert main(["prepare", str(tmp_path / "p1.bin"), "--out", str(tmp_path / "win"), "--no-nonwear",
                 "--no-calibrate"]) == 0
    x = np.load(tmp_path / "win" / "X.npy")
    assert x.shape[1:] == (300, 3) and len(x) == 17  # (N, L, C) at 30 Hz: 90 s, 10 s windows, 5 s hop
    assert set(np.load(tmp_path / "win" / "pid.npy").tolist()) == {"p1"}
    meta = json.loads((tmp_path / "win" / "meta.json").read_text())
    assert meta["sources"][0]["device"]["Device"] == "GENEActiv"


def test_errors_name_the_missing_piece(tmp_path, monkeypatch):
    (tmp_path / "a.cwa").write_bytes(b"MD")
    monkeypatch.setitem(sys.modules, "actipy", None)
    with pytest.raises(ImportError, match=r"flowfm\[devices\]"):
        read_device_file(tmp_path / "a.cwa")
    monkeypatch.setitem(sys.modules, "actipy", actipy)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Java runtime"):
        read_device_file(tmp_path / "a.cwa")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_device_file(tmp_path / "missing.gt3x")
    with pytest.raises(ValueError, match="not a device file"):
        read_device_file(tmp_path / "a.csv")
    with pytest.raises(ValueError, match="read in g"):
        read_recordings(tmp_path / "a.cwa", unit="mg")


@needs_java
def test_a_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.bin").write_text("not\na\ngeneactiv\nfile\n")
    with pytest.raises(ValueError, match=r"bad\.bin: actipy could not read it as a GENEActiv file"):
        read_device_file(tmp_path / "bad.bin")
