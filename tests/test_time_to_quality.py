"""Training time to quality: probe curves over epoch checkpoints and the time to reach a baseline's final quality."""
import json

import numpy as np
import pytest
import torch

import flowfm
from flowfm.config import FlowFMConfig
from flowfm.evaluation.features import encode_windows
from flowfm.evaluation.probe import linear_probe
from flowfm.evaluation.time_to_quality import (compare_time_to_quality, epoch_checkpoints, quality_curve,
                                               time_to_reach)
from flowfm.training import TrainConfig, pretrain


def _curve(values, seconds_per_epoch):
    return [{"epoch": i + 1, "seconds": seconds_per_epoch * (i + 1), "macro_f1": v} for i, v in enumerate(values)]


def test_time_to_reach_takes_the_first_checkpoint_at_or_above_the_target():
    curve = _curve([0.5, 0.7, 0.69, 0.8], 10.0)
    assert time_to_reach(curve, 0.7) == {"epoch": 2, "seconds": 20.0, "value": 0.7}
    assert time_to_reach(curve, 0.75)["epoch"] == 4
    assert time_to_reach(curve, 0.9) is None


def test_compare_uses_the_baselines_final_quality_as_target():
    method = _curve([0.6, 0.8, 0.85], 10.0)
    baseline = _curve([0.5, 0.7, 0.75, 0.78], 10.0)
    out = compare_time_to_quality(method, baseline)
    assert out["target"] == 0.78
    assert out["method"]["epoch"] == 2 and out["baseline"]["epoch"] == 4
    assert out["time_ratio"] == pytest.approx(0.5) and out["epoch_ratio"] == pytest.approx(0.5)
    never = compare_time_to_quality(_curve([0.1, 0.2], 1.0), baseline)
    assert never["method"] is None and never["time_ratio"] is None


def _labelled(n_per_class=24, subjects=6, length=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 30.0
    xs, ys, pids = [], [], []
    for label, freq in enumerate((0.7, 2.5)):
        for i in range(n_per_class):
            x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.28)) * np.ones((3, 1))
            xs.append(x + 0.1 * rng.standard_normal((3, length)))
            ys.append(label)
            pids.append(i % subjects)
    return np.stack(xs).astype(np.float32), np.array(ys), np.array(pids)


def test_quality_curve_probes_every_epoch_with_cumulative_seconds(tmp_path):
    x, y, pid = _labelled()
    torch.manual_seed(0)
    model = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=x.shape[2])).fit_normalizer(x)
    pretrain(model, x, TrainConfig(epochs=3, batch_size=16, warmup_steps=2, keep_checkpoints=0), tmp_path,
             progress=False)
    assert [e for e, _ in epoch_checkpoints(tmp_path)] == [1, 2, 3]
    curve = quality_curve(tmp_path, x, y, pid, n_folds=3)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in curve] == [1, 2, 3]
    assert [r["seconds"] for r in curve] == pytest.approx(np.cumsum([h["seconds"] for h in history]))
    # the last point is the probe of the epoch-3 checkpoint, computed independently here
    last = flowfm.FlowFM.load(tmp_path / "checkpoints" / "epoch_0003")
    expected = linear_probe(encode_windows(last, x), y, pid, n_folds=3)["macro_f1"]["mean"]
    assert curve[-1]["macro_f1"] == pytest.approx(expected)
    assert [r["epoch"] for r in quality_curve(tmp_path, x, y, pid, n_folds=3, epochs=[2])] == [2]


def test_a_run_without_checkpoints_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="flowfm pretrain"):
        epoch_checkpoints(tmp_path)


def test_bench_epoch_curve_probes_each_seed_with_its_own_evaluation_seed(tmp_path):
    import numpy as np

    from bench.epoch_curve import epoch_curve, markdown
    from flowfm.checkpoint import load_model
    from flowfm.cli import main
    from flowfm.data import WindowDataset, save_folder
    from flowfm.evaluation.features import encode_windows
    from flowfm.evaluation.probe import linear_probe

    rng = np.random.default_rng(0)
    n, t = 48, np.arange(48) / 30.0
    y = np.tile([0, 1], n // 2)
    x = (np.sin(2 * np.pi * np.where(y == 0, 1.0, 3.0)[:, None, None] * t) * 0.3 + np.array([0, 0, 1.0])[None, :, None]
         + 0.05 * rng.standard_normal((n, 3, 48))).astype(np.float32)
    pid = np.repeat(np.arange(4), n // 4)
    save_folder(WindowDataset(x=x, pid=pid, y=y), tmp_path / "data")
    for seed in (0, 1):
        assert main(["pretrain", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs" / f"seed_{seed}"),
                     "--preset", "tiny", "--epochs", "2", "--batch-size", "8", "--keep-checkpoints", "0",
                     "--seed", str(seed), "--no-progress", "--null-fit-steps", "0", "--z-bank-size", "0"]) == 0
    result = epoch_curve(tmp_path / "runs", x, y, pid, [1, 2], [None, 1], draws=2, folds=2)
    assert result["seeds"] == [0, 1] and set(result["macro_f1"]) == {"all", "k1"}
    for regime, k in (("all", None), ("k1", 1)):
        for epoch in (1, 2):
            expected = [linear_probe(encode_windows(load_model(tmp_path / "runs" / f"seed_{s}" / "checkpoints" /
                                                               f"epoch_{epoch:04d}"), x), y, pid, n_folds=2,
                                     label_subjects=k, draws=1 if k is None else 2, seed=s)["macro_f1"]["mean"]
                        for s in (0, 1)]
            assert result["macro_f1"][regime][str(epoch)] == expected
    table = markdown(result)
    assert table.count("\n| ") == 3 and "| 2 |" in table
