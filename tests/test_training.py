"""Pretraining loop: learning on real HAPT windows, exact resume, divergence handling."""
import numpy as np
import pytest
import torch

import flowfm
from flowfm.config import FlowFMConfig
from flowfm.training import TrainConfig, TrainingDivergedError, pretrain


def _data(n=96, length=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 30.0
    freq = rng.uniform(0.5, 3.0, size=(n, 1, 1))
    x = np.sin(2 * np.pi * freq * t) * rng.uniform(0.2, 1.0, size=(n, 3, 1))
    return (x + 0.05 * rng.standard_normal((n, 3, length))).astype(np.float32)


def _model(length=48):
    torch.manual_seed(0)
    return flowfm.FlowFM(FlowFMConfig(preset="tiny", window=length))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    x = _data()
    cfg = dict(batch_size=32, lr=1e-3, warmup_steps=2, seed=5, ema_decay=0.9)
    straight = _model().fit_normalizer(x)
    pretrain(straight, x, TrainConfig(epochs=3, **cfg), tmp_path / "a", progress=False)

    class Crash(Exception):
        pass

    def crash_after_second_epoch(epoch, record):
        if epoch == 1:
            raise Crash

    first = _model().fit_normalizer(x)
    with pytest.raises(Crash):
        pretrain(first, x, TrainConfig(epochs=3, **cfg), tmp_path / "b", progress=False,
                 on_epoch_end=crash_after_second_epoch)
    resumed = _model().fit_normalizer(x)
    history = pretrain(resumed, x, TrainConfig(epochs=3, **cfg), tmp_path / "b", resume=True, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    a = flowfm.FlowFM.load(tmp_path / "a" / "model").state_dict()
    b = flowfm.FlowFM.load(tmp_path / "b" / "model").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(tmp_path):
    x = _data()
    model = _model().fit_normalizer(x)
    original = model.loss
    calls = {"n": 0}

    def flaky_loss(batch, **kw):
        calls["n"] += 1
        out = original(batch, **kw)
        return out * float("nan") if calls["n"] > 3 else out  # 3 batches per epoch: epoch 2 diverges

    model.loss = flaky_loss
    with pytest.raises(TrainingDivergedError, match="epoch 2.*epoch_0001"):
        pretrain(model, x, TrainConfig(epochs=3, batch_size=32, seed=0), tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / "epoch_0001" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "latest").read_text() == "epoch_0001"
    flowfm.FlowFM.load(tmp_path / "checkpoints" / "epoch_0001")


def test_resume_without_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        pretrain(_model(), _data(), TrainConfig(epochs=1), tmp_path, resume=True, progress=False)


@pytest.mark.slow
def test_a_hundred_steps_on_real_hapt_lower_the_loss(tmp_path):
    from flowfm.data import load_hapt

    ds = load_hapt()
    rng = np.random.default_rng(0)
    x = np.ascontiguousarray(ds.x[np.sort(rng.choice(len(ds), 1024, replace=False))])
    torch.manual_seed(0)
    model = flowfm.FlowFM(FlowFMConfig(preset="small")).fit_normalizer(x)
    probe = torch.from_numpy(x[:64])
    g = torch.Generator().manual_seed(123)
    fixed = dict(x0=torch.randn(probe.shape, generator=g), t=torch.rand(64, generator=g),
                 drop=torch.zeros(64, dtype=torch.bool), view=probe)

    def probe_loss():
        model.eval()
        with torch.no_grad():
            value = float(model.loss(probe, **fixed))
        model.train()
        return value

    before = probe_loss()
    pretrain(model, x, TrainConfig(epochs=4, batch_size=32, lr=3e-3, warmup_steps=10), tmp_path, progress=False)
    after = probe_loss()
    assert after < 0.6 * before, (before, after)  # 128 steps; the loss of v = 0 is about 2
