"""Public-dataset converters: tiny files written in each dataset's original raw format are converted and checked
for units (g), rate (30 Hz, L = 300, a sine's frequency survives), window counts, labels (80 % rule, transients
dropped, names) and subject ids; malformed inputs raise clear errors and write nothing."""
import gzip
import io
import json
import zipfile

import numpy as np
import pytest

from flowfm.cli import main
from flowfm.data import load_folder
from flowfm.data.converters import CONVERTERS, convert
from flowfm.data.converters.labelled_recording import STANDARD_GRAVITY, finite_segments, split_at_time_gaps, to_g

SINE_HZ, SINE_AMP = 2.0, 0.5  # x: 0.5 g sine at 2 Hz; y: 0; z: gravity (1 g)


def synthetic_g(seconds, fs):
    """``(T, 3)`` in g: x a 2 Hz sine of 0.5 g, y 0, z 1 g."""
    t = np.arange(int(round(seconds * fs))) / fs
    return np.stack([SINE_AMP * np.sin(2 * np.pi * SINE_HZ * t), np.zeros_like(t), np.ones_like(t)], axis=1)


def per_second(fs, spans):
    """Per-sample values from ``[(seconds, value), ...]``."""
    return np.concatenate([np.full(int(round(s * fs)), v) for s, v in spans])


def check_windows(out, n, labels=None, subjects=None):
    """Load ``out`` and check layout, rate, units and sine of every window; return the dataset."""
    ds = load_folder(out)
    assert ds.x.shape == (n, 3, 300) and ds.fs == 30.0
    assert np.load(out / "X.npy").shape == (n, 300, 3)  # channels-last on disk
    x = np.asarray(ds.x, dtype=np.float64)
    np.testing.assert_allclose(x[:, 2].mean(axis=1), 1.0, atol=0.03)  # gravity: 1 g
    np.testing.assert_allclose(x[:, 1], 0.0, atol=0.02)
    np.testing.assert_allclose(x[:, 0].std(axis=1), SINE_AMP / np.sqrt(2), rtol=0.04)
    freqs = np.fft.rfftfreq(300, 1 / 30.0)
    peak = freqs[np.abs(np.fft.rfft(x[:, 0] - x[:, 0].mean(axis=1, keepdims=True), axis=1)).argmax(axis=1)]
    np.testing.assert_allclose(peak, SINE_HZ)
    if labels is not None:
        names = [ds.label_names[int(v)] if v >= 0 else None for v in ds.y]
        assert sorted(names, key=str) == sorted(labels, key=str)
    if subjects is not None:
        assert sorted(set(ds.pid.tolist())) == sorted(subjects)
    return ds


def assert_nothing_written(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ---------------------------------------------------------------- PAMAP2
def write_pamap2(path, subject_rows_acc_g, activity, fs=100.0, unit_scale=STANDARD_GRAVITY):
    n = len(activity)
    table = np.random.default_rng(0).normal(size=(n, 54))
    table[:, 0] = np.arange(n) / fs
    table[:, 1] = activity
    table[:, 2] = np.nan
    table[::11, 2] = 100.0  # heart rate at ~9 Hz
    table[:, 4:7] = subject_rows_acc_g * unit_scale
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, table, fmt="%.6f")


def pamap2_raw(root, unit_scale=STANDARD_GRAVITY):
    fs = 100.0
    act = per_second(fs, [(3, 0), (13.5, 4), (23.5, 17)])  # transient, walking, ironing
    acc = synthetic_g(40, fs)
    acc[2500:2510] = np.nan  # 0.1 s of dropped packets: interpolated
    write_pamap2(root / "PAMAP2_Dataset" / "Protocol" / "subject101.dat", acc, act, unit_scale=unit_scale)
    write_pamap2(root / "PAMAP2_Dataset" / "Protocol" / "subject109.dat", synthetic_g(20, fs),
                 per_second(fs, [(20, 1)]), unit_scale=unit_scale)
    write_pamap2(root / "PAMAP2_Dataset" / "Optional" / "subject101.dat", synthetic_g(20, fs),
                 per_second(fs, [(20, 1)]), unit_scale=unit_scale)
    return root


def test_pamap2(tmp_path):
    raw = pamap2_raw(tmp_path / "raw")
    out = tmp_path / "out"
    summary = convert("pamap2", raw, out)
    # windows start every 5 s over 40 s: [0,10) 70 % walking, [10,20) 65 % walking -> dropped; [5,15) walking;
    # [15,25) 85 % ironing and the three later ones ironing; subject 109 and Optional/ are not read
    check_windows(out, 5, labels=["walking"] + ["ironing"] * 4, subjects=[101])
    assert summary.n_windows == 5 and summary.label_counts["ironing"] == 4
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fs"] == 30.0 and meta["label_names"]["7"] == "ironing"

    out2 = tmp_path / "out2"
    convert("pamap2", raw, out2, keep_unlabelled=True, exclude=())
    ds = check_windows(out2, 10, subjects=[101, 109])  # 7 + 3
    assert (ds.y == -1).sum() == 2 and ds.label_names[0] == "lying"


def test_pamap2_wrong_units_and_missing_files(tmp_path):
    raw = pamap2_raw(tmp_path / "raw", unit_scale=1.0)  # written in g, not m/s^2
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"subject101\.dat.*look like g, not m/s\^2"):
        convert("pamap2", raw, out)
    assert_nothing_written(out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="Protocol/subject1xx.dat"):
        convert("pamap2", tmp_path / "empty", out)
    assert_nothing_written(out)


def test_pamap2_malformed_rows(tmp_path):
    path = tmp_path / "raw" / "Protocol" / "subject102.dat"
    path.parent.mkdir(parents=True)
    path.write_text("0.0 1 nan 30.0 1.0 2.0\n")
    with pytest.raises(ValueError, match=r"subject102\.dat, line 1: 6 columns, expected 54"):
        convert("pamap2", tmp_path / "raw", tmp_path / "out")
    path.write_text("")
    with pytest.raises(ValueError, match=r"subject102\.dat: empty file"):
        convert("pamap2", tmp_path / "raw", tmp_path / "out")
    write_pamap2(path, synthetic_g(12, 100.0), per_second(100.0, [(12, 8)]))  # 8 is not a PAMAP2 activity
    with pytest.raises(ValueError, match=r"unknown activity id\(s\) \[8\.0\]"):
        convert("pamap2", tmp_path / "raw", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- WISDM
def write_wisdm(path, subject, spans, fs=20.0, gap_after=None, unit_scale=STANDARD_GRAVITY):
    codes = per_second(fs, spans)
    acc = synthetic_g(len(codes) / fs, fs) * unit_scale
    t_ns = (np.arange(len(codes)) * 1e9 / fs).astype(np.int64) + 252207666810782
    if gap_after is not None:
        t_ns[int(gap_after * fs):] += 5_000_000_000  # 5 s without samples
    lines = [f"{subject},{c},{t},{x:.7f},{y:.7f},{z:.7f};" for c, t, (x, y, z) in zip(codes, t_ns, acc)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_wisdm(tmp_path):
    accel = tmp_path / "raw" / "wisdm-dataset" / "raw" / "watch" / "accel"
    write_wisdm(accel / "data_1600_accel_watch.txt", 1600, [(25, "A"), (25, "D")])  # 4 + 4 windows
    write_wisdm(accel / "data_1601_accel_watch.txt", 1601, [(30, "S")], gap_after=15)  # 15 s + 15 s: 2 + 2
    convert("wisdm", tmp_path / "raw", tmp_path / "out")
    check_windows(tmp_path / "out", 12, labels=["walking"] * 4 + ["sitting"] * 4 + ["folding"] * 4,
                  subjects=[1600, 1601])


def test_wisdm_malformed(tmp_path):
    path = tmp_path / "raw" / "data_1600_accel_watch.txt"
    write_wisdm(path, 1600, [(12, "N")])
    with pytest.raises(ValueError, match=r"data_1600_accel_watch\.txt, line 1: unknown activity code 'N'"):
        convert("wisdm", tmp_path / "raw", tmp_path / "out")
    path.write_text("1600,A,252207666810782,-0.36,8.79;\n")
    with pytest.raises(ValueError, match=r"line 1: 5 column\(s\), expected at least 6 \(subject, activity_code"):
        convert("wisdm", tmp_path / "raw", tmp_path / "out")
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty file"):
        convert("wisdm", tmp_path / "raw", tmp_path / "out")
    write_wisdm(path, 1600, [(12, "A")], unit_scale=1.0)
    with pytest.raises(ValueError, match="look like g, not m/s"):
        convert("wisdm", tmp_path / "raw", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- Opportunity
def write_opportunity(path, loco, fs=30.0, unit_scale=1000.0):
    n = len(loco)
    table = np.full((n, 250), np.nan)
    table[:, 0] = np.round(np.arange(n) * 1000 / fs)
    table[:, 1:22] = 1000.0  # other sensors
    acc = synthetic_g(n / fs, fs) * unit_scale
    acc[100:115] = np.nan  # 0.5 s Bluetooth dropout: interpolated
    table[:, 22:25] = acc
    table[:, 63:66] = 5.0 * unit_scale  # RLA IMU: not read
    table[:, 243] = loco
    table[:, 244:] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, table, fmt="%.10g")


def write_column_names(path, wrist_name="Accelerometer RWR"):
    names = {i: f"Column: {i} Sensor{i} accX; value = round(original_value), unit = milli g" for i in range(1, 251)}
    for axis, col in zip("XYZ", (23, 24, 25)):
        names[col] = f"Column: {col} {wrist_name} acc{axis}; value = round(original_value), unit = milli g"
    names[244] = "Column: 244 Locomotion"
    path.write_text("Data columns:\n" + "\n".join(names[i] for i in range(1, 251)) + "\n")


def test_opportunity(tmp_path):
    data = tmp_path / "raw" / "OpportunityUCIDataset" / "dataset"
    fs = 30.0
    # stand 12 s, null 2 s, walk 26 s: [0,10) stand; [5,15) and [10,20) mixed -> dropped; 4 walk windows
    write_opportunity(data / "S1-ADL1.dat", per_second(fs, [(12, 1), (2, 0), (26, 2)]))
    write_opportunity(data / "S2-Drill.dat", per_second(fs, [(20, 4), (0.5, 5)]))  # 3 sit windows, lie too short
    write_column_names(data / "column_names.txt")
    convert("opportunity", tmp_path / "raw", tmp_path / "out")
    check_windows(tmp_path / "out", 8, labels=["stand"] + ["walk"] * 4 + ["sit"] * 3, subjects=[1, 2])


def test_opportunity_malformed(tmp_path):
    data = tmp_path / "raw" / "dataset"
    write_opportunity(data / "S1-ADL1.dat", per_second(30.0, [(12, 1)]))
    write_column_names(data / "column_names.txt", wrist_name="Accelerometer LWR")
    with pytest.raises(ValueError, match=r"column_names\.txt: column 23 is 'Accelerometer LWR accX', expected "
                                         r"'Accelerometer RWR accX'"):
        convert("opportunity", tmp_path / "raw", tmp_path / "out")
    (data / "column_names.txt").unlink()
    write_opportunity(data / "S1-ADL1.dat", per_second(30.0, [(12, 3)]))  # 3 is not a locomotion label
    with pytest.raises(ValueError, match=r"S1-ADL1\.dat: unknown locomotion label\(s\) \[3\.0\]"):
        convert("opportunity", tmp_path / "raw", tmp_path / "out")
    write_opportunity(data / "S1-ADL1.dat", per_second(30.0, [(12, 1)]), unit_scale=STANDARD_GRAVITY)
    with pytest.raises(ValueError, match=r"S1-ADL1\.dat.*look like m/s\^2, not milli-g"):
        convert("opportunity", tmp_path / "raw", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- RealWorld
def realworld_csv(seconds, fs=50.0, freq_scale=1.0, header="id,attr_time,attr_x,attr_y,attr_z"):
    acc = synthetic_g(seconds * freq_scale, fs * freq_scale)[: int(seconds * fs)] * STANDARD_GRAVITY
    t_ms = 1435060432000 + np.round(np.arange(len(acc)) * 1000 / fs).astype(np.int64)
    rows = [f"{i + 1},{t},{x:.6f},{y:.6f},{z:.6f}" for i, (t, (x, y, z)) in enumerate(zip(t_ms, acc))]
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_realworld(tmp_path):
    root = tmp_path / "raw" / "realworld2016_dataset"
    (root / "proband1" / "data").mkdir(parents=True)
    (root / "proband2" / "data").mkdir(parents=True)
    # the chest sine is at 4 Hz (same samples read at half the rate): check_windows' 2 Hz proves forearm was read
    (root / "proband1" / "data" / "acc_walking_csv.zip").write_bytes(zip_bytes(
        {"acc_walking_forearm.csv": realworld_csv(20), "acc_walking_chest.csv": realworld_csv(20, freq_scale=0.5),
         "readMe": b"> entries: 1000"}))
    # a multi-session activity: an outer zip of per-session zips
    (root / "proband2" / "data" / "acc_sitting_csv.zip").write_bytes(zip_bytes(
        {"acc_sitting_1_csv.zip": zip_bytes({"acc_sitting_forearm.csv": realworld_csv(20)}),
         "acc_sitting_2_csv.zip": zip_bytes({"acc_sitting_2_forearm.csv": realworld_csv(20)})}))
    (root / "proband2" / "data" / "acc_lying_csv.zip").write_bytes(zip_bytes(
        {"acc_lying_chest.csv": realworld_csv(20)}))
    with pytest.warns(RuntimeWarning, match=r"acc_lying_csv\.zip: no acc_lying_forearm\.csv inside"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    check_windows(tmp_path / "out", 9, labels=["walking"] * 3 + ["sitting"] * 6, subjects=[1, 2])


def test_realworld_malformed(tmp_path):
    data = tmp_path / "raw" / "proband3" / "data"
    data.mkdir(parents=True)
    zpath = data / "acc_running_csv.zip"
    zpath.write_bytes(zip_bytes({"acc_running_forearm.csv": realworld_csv(12, header="id,attr_time,attr_x,attr_y")}))
    with pytest.raises(ValueError, match=r"acc_running_forearm\.csv: missing column\(s\) \['attr_z'\]"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    zpath.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"acc_running_csv\.zip: not a readable zip"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    zpath.rename(data / "acc_dancing_csv.zip")
    with pytest.raises(ValueError, match="unknown activity 'dancing'"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_realworld_hostile_zips_are_refused_with_bounded_work(tmp_path):
    import tracemalloc

    data = tmp_path / "raw" / "proband4" / "data"
    data.mkdir(parents=True)
    zpath = data / "acc_running_csv.zip"
    buf = io.BytesIO()   # a zip bomb: 64 MB of one repeated row compressed ~1000x
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("acc_running_forearm.csv", b"id,attr_time,attr_x,attr_y,attr_z\n" + b"1,0,0,0,9.8\n" * 5_600_000)
    zpath.write_bytes(buf.getvalue())
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"would expand to [\d,]+ bytes .*not a zip bomb"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    assert tracemalloc.get_traced_memory()[1] < 16 * 2**20   # refused from the header, nothing inflated
    tracemalloc.stop()
    member = zip_bytes({"acc_running_forearm.csv": realworld_csv(12)})
    for _ in range(5):   # five zips deep (the release nests one level)
        member = zip_bytes({"acc_running_1_csv.zip": member})
    zpath.write_bytes(member)
    with pytest.raises(ValueError, match="zips deep; expected at most 4"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    flat = b"id,attr_time,attr_x,attr_y,attr_z\n" + b"".join(b"%d,1435060432000,0,0,9.8\n" % i for i in range(900))
    zpath.write_bytes(zip_bytes({"acc_running_forearm.csv": flat}))
    with pytest.raises(ValueError, match=r"clock \(attr_time\) does not increase: 899 of 899 steps"):
        convert("realworld", tmp_path / "raw", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- ADL / HMP
def write_hmp(path, seconds, fs=32.0):
    t = np.arange(int(seconds * fs)) / fs
    x = np.round(31.5 + 10 * np.sin(2 * np.pi * SINE_HZ * t) + 0.25 * np.sign(np.sin(2 * np.pi * SINE_HZ * t)))
    counts = np.stack([x, np.full_like(t, 31.5), np.full_like(t, 52)], axis=1)
    counts[:, 1] = np.where(np.arange(len(t)) % 2, 31, 32)  # y alternates 31/32: mean 0 g
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, counts, fmt="%d")


def test_adl(tmp_path):
    hmp = tmp_path / "raw" / "HMP_Dataset"
    write_hmp(hmp / "Walk" / "Accelerometer-2011-03-24-10-24-39-walk-f1.txt", 25)  # 4 windows
    write_hmp(hmp / "Walk_MODEL" / "Accelerometer-2011-03-24-10-24-39-walk-f1.txt", 25)  # duplicate: skipped
    write_hmp(hmp / "Climb_stairs_MODEL" / "Accelerometer-2011-06-01-14-16-59-climb_stairs-m11.txt", 15)  # 2
    write_hmp(hmp / "Getup_bed" / "Accelerometer-2011-05-30-21-10-31-getup_bed-f1.txt", 5)  # too short: none
    convert("adl", tmp_path / "raw", tmp_path / "out")
    ds = load_folder(tmp_path / "out")
    assert ds.x.shape == (6, 3, 300)
    assert sorted(ds.label_names[int(v)] for v in ds.y) == ["climb_stairs"] * 2 + ["walk"] * 4
    assert sorted(set(ds.pid.tolist())) == ["f1", "m11"]
    x = np.asarray(ds.x, dtype=np.float64)
    # z counts 52 -> -1.5 + 52/63*3 g; y counts 31/32 -> about 0 g
    np.testing.assert_allclose(x[:, 2], -1.5 + 52 / 63 * 3, atol=1e-3)
    np.testing.assert_allclose(x[:, 1].mean(), 0.0, atol=0.01)
    freqs = np.fft.rfftfreq(300, 1 / 30.0)
    assert np.all(freqs[np.abs(np.fft.rfft(x[:, 0], axis=1))[:, 1:].argmax(axis=1) + 1] == SINE_HZ)


def test_adl_malformed(tmp_path):
    path = tmp_path / "raw" / "Walk" / "Accelerometer-2011-03-24-10-24-39-walk-f1.txt"
    path.parent.mkdir(parents=True)
    path.write_text("0.1 0.2 0.98\n" * 400)  # already in g
    with pytest.raises(ValueError, match=r"walk-f1\.txt: values must be integer counts in 0\.\.63"):
        convert("adl", tmp_path / "raw", tmp_path / "out")
    path.write_text("")
    with pytest.raises(ValueError, match=r"walk-f1\.txt: empty file"):
        convert("adl", tmp_path / "raw", tmp_path / "out")
    path.write_text("31 31\n" * 400)
    with pytest.raises(ValueError, match="2 columns, expected 3"):
        convert("adl", tmp_path / "raw", tmp_path / "out")
    path.rename(path.with_name("Accelerometer-2011-03-24-10-24-39-juggle-f1.txt"))
    with pytest.raises(ValueError, match="unknown activity 'juggle'"):
        convert("adl", tmp_path / "raw", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- Capture-24
DICTIONARY = ("annotation,label:Willetts2018,label:Walmsley2020\n"
              "7030 sleeping;MET 0.95,sleep,sleep\n"
              '"home activity;walking, 3.0 mph;MET 3.5",walking,moderate-vigorous\n')


def write_capture24(path, spans, fs=100.0, unit_scale=1.0):
    ann = per_second(fs, spans)
    acc = synthetic_g(len(ann) / fs, fs) * unit_scale
    buf = io.StringIO()
    buf.write("time,x,y,z,annotation\n")
    for i, (a, (x, y, z)) in enumerate(zip(ann, acc)):
        sec = i / fs
        quoted = f'"{a}"' if "," in a else a
        buf.write(f"2016-11-13 02:{int(sec // 60):02d}:{sec % 60:09.6f},{x:.6f},{y:.6f},{z:.6f},{quoted}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(buf.getvalue())
    else:
        path.write_text(buf.getvalue())


def test_capture24(tmp_path):
    raw = tmp_path / "raw" / "capture24"
    raw.mkdir(parents=True)
    (raw / "annotation-label-dictionary.csv").write_text(DICTIONARY)
    write_capture24(raw / "P001.csv.gz", [(20, "7030 sleeping;MET 0.95"), (10, "")])  # 3 sleep, 2 unannotated
    write_capture24(raw / "P002.csv", [(15, "home activity;walking, 3.0 mph;MET 3.5")])  # 2 MVPA
    convert("capture24", tmp_path / "raw", tmp_path / "out")
    ds = check_windows(tmp_path / "out", 5, labels=["sleep"] * 3 + ["moderate-vigorous"] * 2,
                       subjects=["P001", "P002"])
    assert ds.label_names == {0: "sleep", 1: "sedentary", 2: "light", 3: "moderate-vigorous"}
    convert("capture24", tmp_path / "raw", tmp_path / "out", keep_unlabelled=True, overwrite=True)
    assert (load_folder(tmp_path / "out").y == -1).sum() == 2
    convert("capture24", tmp_path / "raw", tmp_path / "out_w", scheme="Willetts2018")
    assert load_folder(tmp_path / "out_w").label_names == {0: "sleep", 1: "walking"}


def test_capture24_malformed(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_capture24(raw / "P003.csv.gz", [(12, "7030 sleeping;MET 0.95")])
    with pytest.raises(FileNotFoundError, match="annotation-label-dictionary.csv"):
        convert("capture24", raw, tmp_path / "out")
    (raw / "annotation-label-dictionary.csv").write_text(DICTIONARY)
    write_capture24(raw / "P003.csv.gz", [(12, "juggling;MET 4")])
    with pytest.raises(ValueError, match=r"P003\.csv\.gz, line 2: annotation 'juggling;MET 4' is not in"):
        convert("capture24", raw, tmp_path / "out")
    write_capture24(raw / "P003.csv.gz", [(12, "7030 sleeping;MET 0.95")], unit_scale=STANDARD_GRAVITY)
    with pytest.raises(ValueError, match=r"P003\.csv\.gz.*look like m/s\^2, not g"):
        convert("capture24", raw, tmp_path / "out")
    with gzip.open(raw / "P003.csv.gz", "wt") as f:
        f.write("time,x,y,annotation\n2016-11-13 02:18:00.000000,0,0,\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['z'\]"):
        convert("capture24", raw, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- shared pieces, registry, CLI
@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_raw_dir_without_the_files(tmp_path, name):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "README.txt").write_text("nothing here")
    with pytest.raises(FileNotFoundError, match="expected"):
        convert(name, tmp_path / "raw", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert(name, tmp_path / "missing", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_to_g_and_gaps():
    g = synthetic_g(2, 50.0)
    np.testing.assert_allclose(to_g(g * 1000, "milli-g", "f"), g)
    with pytest.raises(ValueError, match=r"f: .*median [0-9.]+ milli-g = [0-9.]+ g.*look like g, not milli-g"):
        to_g(g, "milli-g", "f")
    with pytest.raises(ValueError, match="no finite"):
        to_g(np.full((5, 3), np.nan), "g", "f")
    sig = np.arange(100.0)[:, None].repeat(3, axis=1)
    sig[10:13] = np.nan  # 3 samples <= 1 s at 10 Hz: interpolated
    sig[40:60] = np.nan  # 2 s: cut
    sig[98:] = np.nan  # trailing: cut
    parts = finite_segments(sig, fs=10.0, max_gap_s=1.0)
    assert [p for p, _ in parts] == [slice(0, 40), slice(60, 98)]
    np.testing.assert_allclose(parts[0][1][:, 0], np.arange(40.0))
    assert split_at_time_gaps([0, 1, 2, 10, 11, 5, 6], max_gap=2) == [slice(0, 3), slice(3, 5), slice(5, 7)]


def test_existing_output_and_unknown_name(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="not empty"):
        convert("adl", tmp_path / "raw", out)
    assert (out / "keep.txt").read_text() == "old"
    with pytest.raises(FileExistsError, match="keep.txt"):   # --overwrite replaces a dataset folder, not this
        convert("adl", tmp_path / "raw", out, overwrite=True)
    assert (out / "keep.txt").read_text() == "old"
    with pytest.raises(ValueError, match="unknown dataset 'hapt2'; available converters: pamap2, wisdm"):
        convert("hapt2", tmp_path, tmp_path / "o")


def test_cli_convert(tmp_path, capsys):
    assert main(["convert", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("pamap2", "wisdm", "opportunity", "realworld", "adl", "capture24"))
    write_hmp(tmp_path / "raw" / "Walk" / "Accelerometer-2011-03-24-10-24-39-walk-f1.txt", 25)
    out = tmp_path / "out"
    assert main(["convert", "adl", str(tmp_path / "raw"), str(out)]) == 0
    assert "4 windows" in capsys.readouterr().out and (out / "Y.npy").is_file()
    assert main(["convert", "adl", str(tmp_path / "raw"), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "adl", str(tmp_path / "raw"), str(out), "--overwrite", "--keep-unlabelled"]) == 0
    assert main(["convert", "wisdm", str(tmp_path / "raw"), str(tmp_path / "o2")]) == 2
    assert "data_*_accel_watch.txt" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    assert main(["convert", "adl"]) == 2
