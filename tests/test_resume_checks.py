"""``pretrain --resume`` continues only the run it finds, from an intact checkpoint of that run, with that run's
settings and data (flowfm.training.resume, pretrain_run.check_resume_options)."""
import json
import shutil

import numpy as np
import pytest
import torch

from flowfm.checkpoint import load_model
from flowfm.cli import main
from flowfm.data import WindowDataset, save_folder

BASE = ["--preset", "tiny", "--epochs", "3", "--batch-size", "8", "--warmup-steps", "2", "--seed", "3",
        "--no-progress", "--null-fit-steps", "0", "--z-bank-size", "0"]


def _folder(path, seed, n=32):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 3, 48)) * 0.2 + np.array([0, 0, 1.0])[None, :, None]).astype(np.float32)
    save_folder(WindowDataset(x=x, pid=np.repeat(np.arange(4), n // 4)), path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data, other = _folder(root / "data", 0), _folder(root / "other", 1)
    for name, seed in (("a", "3"), ("b", "4")):
        assert main(["pretrain", "--data", str(data), "--out", str(root / name), *BASE, "--seed", seed]) == 0
    return root, data, other


def _snapshot(run):
    return {p.relative_to(run).as_posix(): p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


def _fresh_copy(runs, tmp_path, name="a"):
    root = runs[0]
    copy = tmp_path / name
    shutil.copytree(root / name, copy)
    return copy


def _error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("extra, needle", [
    (["--lr", "1e-3"], "--lr 0.001 (the run has 0.002)"),
    (["--epochs", "5"], "--epochs 5 (the run has 3)"),
    (["--preset", "small"], "--preset small (the run has tiny)"),
    (["--p-uncond", "0.3"], "--p-uncond 0.3 (the run has 0.0)"),
])
def test_resume_refuses_options_that_differ_from_the_run(runs, tmp_path, capsys, extra, needle):
    root, data, _ = runs
    run = _fresh_copy(runs, tmp_path)
    before = _snapshot(run)
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--no-progress", *extra]) == 2
    assert needle in _error(capsys)
    assert _snapshot(run) == before


def test_resume_refuses_other_data(runs, tmp_path, capsys):
    _, data, other = runs
    run = _fresh_copy(runs, tmp_path)
    before = _snapshot(run)
    assert main(["pretrain", "--data", str(other), "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "--data" in _error(capsys)
    moved = tmp_path / "same_path"             # same windows count and shape at the stored path: fingerprint
    shutil.copytree(other, moved)
    record = json.loads((run / "data.json").read_text())
    record["data"] = [str(moved)]
    (run / "data.json").write_text(json.dumps(record))
    before = _snapshot(run)
    assert main(["pretrain", "--data", str(moved), "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "windows differ from the run's" in _error(capsys)
    assert _snapshot(run) == before


def test_latest_may_not_name_a_folder_outside_its_run(runs, tmp_path, capsys):
    root, data, _ = runs
    run = _fresh_copy(runs, tmp_path)
    (run / "checkpoints" / "latest").write_text("../../b/checkpoints/epoch_0003")
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "never a path elsewhere" in _error(capsys)


def test_a_foreign_train_state_is_not_resumed_from(runs, tmp_path, capsys):
    root, data, _ = runs
    run = _fresh_copy(runs, tmp_path)
    ckpt = run / "checkpoints"
    for suffix in (".safetensors", ".json"):      # run b's optimiser state beside run a's weights
        shutil.copy(root / "b" / "checkpoints" / "epoch_0003" / f"train_state{suffix}",
                    ckpt / "epoch_0003" / f"train_state{suffix}")
    (ckpt / "epoch_0002").rename(ckpt / "epoch_0002_hidden")   # and no older one to fall back to
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "belongs to other weights" in _error(capsys)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(runs, tmp_path, capsys):
    root, data, _ = runs
    run = _fresh_copy(runs, tmp_path)
    weights = run / "checkpoints" / "epoch_0003" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    shutil.rmtree(run / "model")
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "not resuming from the newer checkpoint" in out and "resuming from the intact epoch_0002" in out
    resumed, straight = load_model(run / "model").state_dict(), load_model(root / "a" / "model").state_dict()
    for key in straight:                           # epoch 3 recomputed from epoch 2: the same weights
        assert torch.equal(resumed[key], straight[key]), key


def test_keep_checkpoints_may_change_on_resume(runs, tmp_path, capsys):
    _, data, _ = runs
    run = _fresh_copy(runs, tmp_path)
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--no-progress",
                 "--keep-checkpoints", "1"]) == 0
    assert "keeping 1 checkpoints (the run had 2)" in capsys.readouterr().out
