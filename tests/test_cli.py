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
    assert main(["pretrain", "--data", str(folder), "--out", str(run), "--resume", "--no-progress"]) == 0

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
                     "--out", str(samples)]) == 0
        assert np.isfinite(np.load(samples)).all()
    assert main(["sample", "--checkpoint", str(run / "model"), "--cond-data", str(folder), "--n", "2",
                 "--steps", "2", "--method", "euler", "--guidance", "2", "--out", str(samples)]) == 0
    assert np.isfinite(np.load(samples)).all()


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
