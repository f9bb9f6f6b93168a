"""Unlabelled corpora at scale: shard folders / recordings as one lazily read corpus, `flowfm shard`, bounded RSS."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from flowfm.cli import main
from flowfm.data import WindowDataset, load_folder, make_windows, resample_to, save_folder
from flowfm.data.corpus import WindowCorpus, open_corpus
from flowfm.data.recording import recording_windows, resample_recording
from flowfm.data.shards import write_shards
from flowfm.normalizer import ChannelNormalizer


def _shards(root, sizes, length=64, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = []
    for k, n in enumerate(sizes):
        x = rng.standard_normal((n, channels, length)).astype(np.float32)
        save_folder(WindowDataset(x=x, pid=np.full(n, k)), root / f"shard_{k:05d}")
        xs.append(x)
    return np.concatenate(xs)


def _recording(seconds, fs, seed=0):
    """(T, 3) in g: gravity on z plus a random walk, float64."""
    rng = np.random.default_rng(seed)
    t = int(seconds * fs)
    return np.cumsum(rng.standard_normal((t, 3)), axis=0) * 0.01 + np.array([0.0, 0.0, 1.0])


def test_corpus_indexing_equals_the_concatenated_shards(tmp_path):
    full = _shards(tmp_path / "c", [7, 1, 13, 5])
    corpus = open_corpus([str(tmp_path / "c" / "shard_*")])
    assert isinstance(corpus, WindowCorpus) and len(corpus) == 26 and corpus.shape == (26, 3, 64)
    rng = np.random.default_rng(1)
    for _ in range(40):  # sorted draws, most of them across shard boundaries
        idx = np.sort(rng.choice(26, size=rng.integers(1, 27), replace=False))
        got = corpus[idx]
        assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, full[idx])
    idx = rng.integers(-26, 26, size=40)  # any order, repeats, negative
    assert np.array_equal(corpus[idx], full[idx])
    assert np.array_equal(corpus[5:9], full[5:9]) and np.array_equal(corpus[-1], full[-1])
    # the parent folder and an explicit list give the same corpus
    assert np.array_equal(open_corpus([str(tmp_path / "c")])[:], full)
    parts = [str(tmp_path / "c" / f"shard_{k:05d}") for k in range(4)]
    assert np.array_equal(open_corpus(parts)[:], full)
    view = corpus.subset(np.array([3, 20, 8]))
    assert np.array_equal(view[np.array([2, 0])], full[[8, 3]]) and view.shape == (3, 3, 64)
    # the temp folder of an interrupted atomic write is not a shard
    (tmp_path / "c" / ".shard_00004.tmp-0123").mkdir()
    np.save(tmp_path / "c" / ".shard_00004.tmp-0123" / "X.npy", np.zeros((2, 10, 9), np.float32))
    assert len(open_corpus([str(tmp_path / "c")])) == 26


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc/self/fd")
def test_no_file_stays_open_between_reads(tmp_path):
    full = _shards(tmp_path / "c", [2] * 40, length=16)
    before = len(os.listdir("/proc/self/fd"))
    corpus = open_corpus([str(tmp_path / "c")])
    assert np.array_equal(corpus[np.arange(0, 80, 3)], full[::3])
    assert len(os.listdir("/proc/self/fd")) == before  # a corpus of thousands of shards cannot exhaust descriptors


def test_channels_first_and_float64_shards(tmp_path):
    x = np.random.default_rng(2).standard_normal((4, 3, 40))
    (tmp_path / "cf").mkdir()
    np.save(tmp_path / "cf" / "X.npy", x)  # (N, C, L) float64 without meta.json: layout resolved from the shape
    corpus = open_corpus([str(tmp_path / "cf")])
    assert np.array_equal(corpus[np.arange(4)], x.astype(np.float32))


def test_clear_errors(tmp_path):
    _shards(tmp_path / "a", [3])
    _shards(tmp_path / "b", [3], channels=2)
    _shards(tmp_path / "l", [3], length=32)
    with pytest.raises(ValueError, match=r"b/shard_00000 holds windows of C=2"):
        open_corpus([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(ValueError, match=r"l/shard_00000 .*L=32"):
        open_corpus([str(tmp_path / "a"), str(tmp_path / "l")])
    with pytest.raises(FileNotFoundError, match="matches no files"):
        open_corpus([str(tmp_path / "nothing_*")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_corpus([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither X.npy nor shard folders"):
        open_corpus([str(tmp_path / "empty")])

    bad = tmp_path / "bad" / "shard_00000"
    bad.mkdir(parents=True)
    (bad / "X.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="shard_00000/X.npy is not a readable .npy file"):
        open_corpus([str(bad)])
    x_path = tmp_path / "a" / "shard_00000" / "X.npy"
    (bad / "X.npy").write_bytes(x_path.read_bytes()[:-100])  # cut off, like an interrupted copy
    with pytest.raises(ValueError, match="is truncated"):
        open_corpus([str(bad)])
    np.save(bad / "X.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="rank 3"):
        open_corpus([str(bad)])
    np.save(bad / "X.npy", np.zeros((5, 64, 3), np.float32))
    np.save(bad / "pid.npy", np.zeros(4, int))
    with pytest.raises(ValueError, match="pid.npy has shape"):
        open_corpus([str(bad)])
    x = np.zeros((5, 64, 3), np.float32)
    x[3, 10, 1] = np.nan
    np.save(bad / "X.npy", x)
    (bad / "pid.npy").unlink()
    corpus = open_corpus([str(bad)])  # opening reports no NaN; the batch that reads it does
    assert corpus[np.array([0, 1])].shape == (2, 3, 64)
    with pytest.raises(ValueError, match=r"shard_00000/X.npy window 3 holds NaN"):
        corpus[np.array([1, 3])]

    np.save(tmp_path / "rec.npy", np.zeros((900, 3), np.float32))
    with pytest.raises(ValueError, match="--recording-fs"):
        open_corpus([str(tmp_path / "rec.npy")])
    with pytest.raises(ValueError, match="shorter than one 10 s window"):
        open_corpus([str(tmp_path / "rec.npy")], recording_fs=100.0)
    np.save(tmp_path / "wide.npy", np.zeros((3, 900), np.float32))
    with pytest.raises(ValueError, match=r"looks like \(C, T\)"):
        open_corpus([str(tmp_path / "wide.npy")], recording_fs=100.0)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="'.txt' file"):
        open_corpus([str(tmp_path / "notes.txt")])
    (tmp_path / "broken.csv").write_text("x,y,z\n0,0,1\n0,zero,1\n")
    with pytest.raises(ValueError, match="broken.csv: lines 2-3 are not all rows"):
        open_corpus([str(tmp_path / "broken.csv")], recording_fs=50.0)
    rec = _recording(30, 50.0)
    rec[700, 2] = np.inf
    np.save(tmp_path / "gap.npy", rec)
    with pytest.raises(ValueError, match="gap.npy: sample row 700 holds NaN/inf"):
        open_corpus([str(tmp_path / "gap.npy")], recording_fs=50.0)


@pytest.mark.parametrize("fs", [100.0, 50.0, 30.0])
def test_recording_windows_equal_the_one_shot_pipeline(tmp_path, fs):
    rec = _recording(95, fs, seed=int(fs))
    np.save(tmp_path / "rec.npy", rec.astype(np.float32))
    signal = np.load(tmp_path / "rec.npy").astype(np.float64)
    expected, _ = make_windows(resample_to(signal, fs, 30.0), 30.0)  # the existing functions, whole signal at once
    assert expected.shape == (18, 3, 300)
    # streamed in blocks far smaller than the recording: the same windows, bit for bit
    streamed = np.concatenate(list(recording_windows(tmp_path / "rec.npy", fs, block_rows=700)))
    assert np.array_equal(streamed, expected)
    np.testing.assert_array_equal(resample_recording(tmp_path / "rec.npy", fs, block_rows=333),
                                  resample_to(signal, fs, 30.0).astype(np.float32))
    corpus = open_corpus([str(tmp_path / "rec.npy")], recording_fs=fs)  # windowed on the fly
    assert np.array_equal(corpus[np.arange(len(corpus))], expected)


def test_csv_recording_with_header(tmp_path):
    rec = _recording(42, 50.0, seed=3)
    np.savetxt(tmp_path / "rec.csv", rec, delimiter=",", header="acc_x,acc_y,acc_z", comments="")
    signal = np.loadtxt(tmp_path / "rec.csv", delimiter=",", skiprows=1)
    expected, _ = make_windows(resample_to(signal, 50.0, 30.0), 30.0)
    corpus = open_corpus([str(tmp_path / "rec.csv")], recording_fs=50.0)
    assert len(corpus) == len(expected) == 7 and np.array_equal(corpus[:], expected)


def test_shard_round_trip_and_pretrain_on_shards(tmp_path, capsys):
    fs = 50.0
    recs = {"alice": _recording(80, fs, 4), "bob": _recording(61, fs, 5), "short": _recording(6, fs, 6)}
    np.save(tmp_path / "alice.npy", recs["alice"].astype(np.float32))
    np.savetxt(tmp_path / "bob.csv", recs["bob"], delimiter=",")
    np.save(tmp_path / "short.npy", recs["short"].astype(np.float32))
    out = tmp_path / "corpus"
    files = [str(tmp_path / "alice.npy"), str(tmp_path / "bob.csv"), str(tmp_path / "short.npy")]
    assert main(["shard", *files, "--fs", "50", "--out", str(out), "--windows-per-shard", "5"]) == 0
    assert "skipped" in capsys.readouterr().out

    expected = [make_windows(resample_to(np.load(files[0]).astype(np.float64), fs, 30.0), 30.0)[0],
                make_windows(resample_to(np.loadtxt(files[1], delimiter=","), fs, 30.0), 30.0)[0]]
    shards = sorted(out.glob("shard_*"))
    loaded = [load_folder(p) for p in shards]  # the standard folder layout
    assert [len(d) for d in loaded] == [5, 5, 5, 5, 5, 1]  # 15 + 11 windows, shards span recordings
    assert np.array_equal(np.concatenate([d.x for d in loaded]), np.concatenate(expected))
    assert list(np.concatenate([d.pid for d in loaded])) == ["alice"] * 15 + ["bob"] * 11
    assert np.load(shards[0] / "X.npy").shape == (5, 300, 3)  # channels-last on disk
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp folders left

    assert main(["shard", files[0], "--fs", "50", "--out", str(out)]) == 2  # would mix two corpora
    assert "already holds a shard corpus" in capsys.readouterr().err

    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(out / "shard_*"), files[0], "--recording-fs", "50", "--out", str(run),
                 "--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--warmup-steps", "1",
                 "--no-progress"]) == 0
    assert "on 41 windows (3, 300)" in capsys.readouterr().out
    assert (run / "model" / "model.safetensors").is_file()
    assert main(["pretrain", "--data", str(tmp_path / "nothing_*"), "--out", str(run)]) == 2
    assert "matches no files" in capsys.readouterr().err


def test_normalizer_fit_on_a_corpus(tmp_path):
    full = (np.random.default_rng(7).standard_normal((5200, 3, 32)) * 0.3 + 0.5).astype(np.float32)
    for k, x in enumerate(np.split(full, [700, 1000])):  # chunks of 4096 windows straddle the shard boundaries
        save_folder(WindowDataset(x=x, pid=np.zeros(len(x), int)), tmp_path / "c" / f"shard_{k:05d}")
    corpus = open_corpus([str(tmp_path / "c")])
    on_array, on_corpus = ChannelNormalizer(3).fit(full), ChannelNormalizer(3).fit(corpus.subsample())
    assert corpus.subsample() is corpus  # small corpora: all windows, the same chunks, the same numbers
    assert torch.equal(on_array.mean, on_corpus.mean) and torch.equal(on_array.std, on_corpus.std)
    sub = corpus.subsample(1000, seed=3)
    assert len(sub) == 1000 and np.array_equal(sub.index, corpus.subsample(1000, seed=3).index)
    on_sub = ChannelNormalizer(3).fit(sub)
    assert torch.equal(on_sub.mean, ChannelNormalizer(3).fit(full[sub.index]).mean)
    torch.testing.assert_close(on_sub.std, on_array.std, rtol=0.05, atol=0)


# Bounded memory. A corpus of 4 shards (302 MB = 288 MiB on disk) is read for one full epoch in the trainer's access
# pattern (batches of 256 sorted indices from `epoch_order`, as `trainer._batches` reads them) by a subprocess that
# watches its own resident set (VmRSS after every batch, and the high-water mark VmHWM reset before the epoch).
# Page-cache pages of a file mapping count in RSS while mapped, so without releasing them an epoch's RSS grows to the
# corpus size. The corpus unmaps them every 16 windows, so growth stays below one batch (0.9 MB) + 16 page-cache folios
# (<= 32 MiB) + allocator slack; the test allows 48 MiB, 1/6 of the corpus. The control pass over the same shards as
# plain np.load(mmap_mode="r") memmaps must grow by more than half the corpus: the measurement catches the problem.
_MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from flowfm.data import corpus as corpus_mod
    from flowfm.training.trainer import epoch_order

    def kb(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    def epoch(corpus):
        base = kb("VmRSS")
        try:  # reset the high-water mark VmHWM to the current RSS (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            reset = True
        except OSError:
            reset = False
        peak, n = base, 0
        order = epoch_order(len(corpus), 0, 0)
        for start in range(0, len(order) - 255, 256):  # the trainer's reads: sorted slices of the epoch order
            batch = corpus[np.sort(order[start:start + 256])]
            assert batch.shape == (256, 3, 300)
            n += len(batch)
            peak = max(peak, kb("VmRSS"))
        if reset:
            peak = max(peak, kb("VmHWM"))
        return {"growth_mb": (peak - base) / 1024, "windows": n, "hwm_reset": reset}

    corpus = corpus_mod.open_corpus([sys.argv[1]])
    idx = np.array([0, 1, len(corpus) // 2, len(corpus) - 1])
    assert np.allclose(corpus[idx][:, 2, 0], (idx % 1000) * 1e-3 + 1.0)  # the right windows come back
    bounded = epoch(corpus)
    # control: the same shards as plain np.load(mmap_mode="r") memmaps (the load_folder path), pages stay mapped
    control = epoch(corpus_mod.WindowCorpus([
        corpus_mod.ArraySource(np.load(s._x_path, mmap_mode="r").transpose(0, 2, 1), s.name)
        for s in corpus.sources]))
    print(json.dumps({"bounded": bounded, "control": control, "corpus_mb": corpus.shape[0] * 3600 / 2**20}))
""")


def _write_big_shard(folder, n, start, chunk=4096):
    """X.npy (n, 300, 3) float32 written chunk by chunk (never n windows in memory): window i is gravity on z
    plus i % 1000 mg on every channel."""
    folder.mkdir(parents=True)
    pattern = np.zeros((300, 3), np.float32)
    pattern[:, 2] = 1.0
    with open(folder / "X.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, 300, 3)})
        for s in range(0, n, chunk):
            i = np.arange(start + s, start + min(s + chunk, n))
            (pattern[None] + ((i % 1000) * 1e-3).astype(np.float32)[:, None, None]).tofile(f)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_bounded_memory_over_a_corpus_larger_than_the_allowance(tmp_path):
    per_shard = 21_000
    for k in range(4):
        _write_big_shard(tmp_path / "big" / f"shard_{k:05d}", per_shard, k * per_shard)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path / "big" / "shard_*")],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    bounded, control, corpus_mb = result["bounded"], result["control"], result["corpus_mb"]
    assert corpus_mb > 280 and bounded["windows"] == control["windows"] == 4 * per_shard // 256 * 256
    allowance_mb = 48  # the memory the corpus may add: < 1/6 of its 288 MiB
    assert bounded["growth_mb"] < allowance_mb, result
    assert control["growth_mb"] > 0.5 * corpus_mb, result  # what an unreleased mapping costs: the measure works


def test_excluding_subjects_keeps_every_other_window_in_order(tmp_path):
    full = _shards(tmp_path / "c", [4, 6, 3], length=300)        # shard k holds subject k
    rec = tmp_path / "walk.npy"
    np.save(rec, _recording(40, 30.0))
    corpus = open_corpus([str(tmp_path / "c"), str(rec)], recording_fs=30.0)
    pid = corpus.subject_ids()
    assert len(pid) == len(corpus) and list(pid[:13].astype(str)) == ["0"] * 4 + ["1"] * 6 + ["2"] * 3
    view = corpus.without_subjects([1, "2"])
    keep = [i for i in range(len(corpus)) if str(pid[i]) not in ("1", "2")]
    assert len(view) == len(keep) and np.array_equal(view[:], corpus[np.array(keep)])
    assert np.array_equal(view[:4], full[:4])
    with pytest.raises(ValueError, match="subject\\(s\\) 9 are not in the corpus"):
        corpus.without_subjects([9])
    with pytest.raises(ValueError, match="leaves no windows"):
        open_corpus([str(tmp_path / "c")]).without_subjects([0, 1, 2])
    bare = tmp_path / "bare"
    bare.mkdir()
    np.save(bare / "X.npy", full[:3].transpose(0, 2, 1))
    with pytest.raises(ValueError, match="no subject ids"):
        open_corpus([str(bare)]).subject_ids()


def test_pretrain_excludes_subjects_and_records_it(tmp_path):
    _shards(tmp_path / "c", [8, 8, 8])
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "c"), "--exclude-subjects", "0,2", "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "4", "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "data.json").read_text())
    assert record["windows"] == 8 and record["exclude_subjects"] == "0,2"
    assert main(["pretrain", "--data", str(tmp_path / "c"), "--exclude-subjects", "7", "--preset", "tiny",
                 "--epochs", "1", "--out", str(tmp_path / "bad"), "--no-progress"]) != 0


@pytest.mark.parametrize("unit, per_g", [("m/s2", 9.80665), ("mg", 1000.0)])
def test_corpus_and_shards_refuse_other_units_and_convert_on_request(tmp_path, unit, per_g):
    rec = _recording(40, 50.0, seed=9)
    np.save(tmp_path / "rec.npy", rec * per_g)
    shard = tmp_path / "shards" / "shard_00000"
    x_g = (np.random.default_rng(1).standard_normal((6, 3, 300)) * 0.2 + np.array([0, 0, 1.0])[:, None])
    save_folder(WindowDataset(x=(x_g * per_g).astype(np.float32), pid=np.zeros(6, int)), shard)
    for spec, name in ((str(tmp_path / "rec.npy"), "rec.npy"), (str(tmp_path / "shards"), "shard_00000/X.npy")):
        with pytest.raises(ValueError, match=rf"{name}: acceleration looks like .*Pass --unit {unit} to convert"):
            open_corpus([spec], recording_fs=50.0)
    corpus = open_corpus([str(tmp_path / "shards"), str(tmp_path / "rec.npy")], recording_fs=50.0, unit=unit)
    expected_rec, _ = make_windows(resample_to(rec, 50.0, 30.0), 30.0)
    np.testing.assert_allclose(corpus[np.arange(6)], x_g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(corpus[np.arange(6, len(corpus))], expected_rec, rtol=1e-5, atol=1e-6)

    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"rec.npy: acceleration looks like .*--unit {unit}"):
        write_shards([tmp_path / "rec.npy"], 50.0, out)
    assert not list(out.glob("shard_*"))  # refused before anything was written
    write_shards([tmp_path / "rec.npy"], 50.0, out, unit=unit)
    np.testing.assert_allclose(load_folder(out / "shard_00000").x, expected_rec, rtol=1e-5, atol=1e-6)
