"""The flowfm command line, end to end on small data (and the quick demo on real HAPT)."""
import json

import numpy as np
import pytest

from flowfm.cli import main
from flowfm.data import WindowDataset, save_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, length = 120, 64
    pid = np.repeat(np.arange(6), n // 6)
    y = rng.integers(0, 2, size=n)
    t = np.arange(length) / 30.0
    x = np.where(y[:, None, None] == 0, np.sin(2 * np.pi * 1.0 * t), np.sin(2 * np.pi * 3.0 * t))
    x = (x * np.array([0.3, 0.2, 0.1])[None, :, None] + np.array([0, 0, 1.0])[None, :, None]
         + 0.02 * rng.standard_normal((n, 3, length))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "toy"
    save_folder(WindowDataset(x=x, pid=pid, y=y), path)
    return path


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends on cpu" in out and "eager" in out and "gn_film_silu" in out


def test_pretrain_evaluate_sample_on_a_folder(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(folder), "--out", str(run), "--preset", "tiny", "--epochs", "2",
                 "--batch-size", "32", "--no-progress"]) == 0
    assert (run / "model" / "model.safetensors").is_file()
    doc = json.loads((run / "model" / "config.json").read_text())
    assert doc["data"] == {"sample_rate_hz": 30.0, "window_length": 64, "hop": 32, "unit": "g",
                           "channels": ["x", "y", "z"]}  # what the windows were
    assert main(["pretrain", "--data", str(folder), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert json.loads((run / "model" / "config.json").read_text())["data"] == doc["data"]

    report = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(folder), "--checkpoint", str(run / "model"), "--folds", "3",
                 "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["folds"] == 3 and 0.0 <= result["macro_f1_mean"] <= 1.0

    assert main(["evaluate", "--data", str(folder), "--encoder", "random", "--preset", "tiny", "--folds", "3",
                 "--label-subjects", "1", "--draws", "2"]) == 0

    samples = tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", str(run / "model"), "--n", "3", "--steps", "2", "--out",
                 str(samples)]) == 0
    assert np.load(samples).shape == (3, 64, 3)  # channels-last like X.npy
    for prior in ("bank", "null"):  # default p_uncond = 0: pretraining stored a bank and fitted the null vector
        assert main(["sample", "--checkpoint", str(run / "model"), "--n", "2", "--steps", "2", "--prior", prior,
                     "--out", str(samples), "--overwrite"]) == 0
        assert np.isfinite(np.load(samples)).all()
    assert main(["sample", "--checkpoint", str(run / "model"), "--cond-data", str(folder), "--n", "2",
                 "--steps", "2", "--method", "euler", "--guidance", "2", "--out", str(samples), "--overwrite"]) == 0
    assert np.isfinite(np.load(samples)).all()


def test_every_entry_point_refuses_m_s2_and_converts_with_unit(folder, tmp_path, capsys):
    from flowfm.data import load_folder

    ds = load_folder(folder)
    in_ms2 = tmp_path / "ms2"
    save_folder(WindowDataset(x=np.asarray(ds.x) * np.float32(9.80665), pid=ds.pid, y=ds.y), in_ms2)
    rec = tmp_path / "rec.npy"
    t = np.arange(3000) / 100.0
    np.save(rec, (np.sin(t)[:, None] * 0.2 + np.array([0.0, 0.0, 1.0])) * 9.80665)  # 30 s at 100 Hz in m/s^2
    model = tmp_path / "m"
    from flowfm.baselines import build_model

    build_model("flowfm", {"preset": "tiny", "window": 64}).save(model)
    commands = {
        "pretrain": ["pretrain", "--data", str(in_ms2), "--out", str(tmp_path / "run"), "--preset", "tiny",
                     "--epochs", "1", "--batch-size", "64", "--warmup-steps", "1", "--null-fit-steps", "0",
                     "--z-bank-size", "0", "--no-progress"],
        "pretrain-recording": ["pretrain", "--data", str(rec), "--recording-fs", "100", "--out",
                               str(tmp_path / "run2"), "--preset", "tiny", "--epochs", "1", "--batch-size", "4",
                               "--warmup-steps", "1", "--null-fit-steps", "0", "--z-bank-size", "0",
                               "--no-progress"],
        "shard": ["shard", str(rec), "--fs", "100", "--out", str(tmp_path / "shards")],
        "evaluate": ["evaluate", "--data", str(in_ms2), "--encoder", "random", "--preset", "tiny", "--folds", "2"],
        "sample": ["sample", "--checkpoint", str(model), "--cond-data", str(in_ms2), "--n", "2", "--steps", "1",
                   "--out", str(tmp_path / "s.npy")],
        "embed": ["embed", "--checkpoint", str(model), "--data", str(in_ms2), "--out", str(tmp_path / "e.npz")],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        where = "rec.npy" if "recording" in name or name == "shard" else "ms2/X.npy"
        assert f"{where}: acceleration looks like m/s^2" in err and "Pass --unit m/s2 to convert" in err, (name, err)
    assert not (tmp_path / "shards").exists() or not list((tmp_path / "shards").glob("shard_*"))
    for name, argv in commands.items():
        assert main(argv + ["--unit", "m/s2"]) == 0, name
        capsys.readouterr()
    assert np.load(tmp_path / "s.npy").shape == (2, 64, 3)
    with np.load(tmp_path / "e.npz") as f:
        from flowfm.checkpoint import load_model

        np.testing.assert_allclose(f["z"], load_model(model).embed(ds.x).numpy(), rtol=1e-4, atol=1e-6)
    # the normaliser saw g, not m/s^2: its mean is the data's mean in g
    np.testing.assert_allclose(load_model(tmp_path / "run" / "model").normalizer.mean.numpy(),
                               np.asarray(ds.x).mean(axis=(0, 2)), atol=1e-3)
    assert len(list((tmp_path / "shards").glob("shard_*"))) == 1


def test_clear_errors(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert main(["pretrain", "--out", str(tmp_path / "never"), "--resume"]) == 2


@pytest.mark.slow
def test_demo_quick_on_real_hapt(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset"]["windows"] > 4000 and summary["dataset"]["subjects"] == 30
    for name in ("flowfm", "random_init"):
        for regime in ("all_labels", "3_subjects"):
            assert 0.0 < summary["probe"][name][regime]["macro_f1"]["mean"] <= 1.0
    assert (tmp_path / "real_vs_generated.png").stat().st_size > 10_000
