"""model.embed (eval mode, batch-independent, no side effects), eval-mode loading, units, rates, probe scaling, and
the `flowfm embed` command."""
import copy
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import flowfm
from flowfm.baselines import build_model
from flowfm.checkpoint import load_model
from flowfm.cli import main
from flowfm.data import WindowDataset, make_windows, resample_to, save_folder
from flowfm.data.units import STANDARD_GRAVITY, UnitError
from flowfm.evaluation import classification_metrics, linear_probe

METHODS = ["flowfm", "diffusion", "ssl-wearables"]
LENGTH = 64


def _windows(n, length=LENGTH, seed=0):
    """(n, 3, length) float32 in g: gravity on z, a per-window sine and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 30.0
    f = rng.uniform(0.5, 4.0, size=(n, 1, 1))
    x = 0.3 * np.sin(2 * np.pi * f * t) * rng.uniform(0.2, 1.0, size=(n, 3, 1)) + np.array([0, 0, 1.0])[:, None]
    return (x + 0.05 * rng.standard_normal((n, 3, length))).astype(np.float32)


def _model(method, seed=0):
    """A tiny model whose BatchNorm running statistics are not the init's (so eval and train modes differ)."""
    torch.manual_seed(seed)
    model = build_model(method, {"preset": "tiny", "window": LENGTH})
    with torch.no_grad():
        for module in model.encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", METHODS)
def test_embedding_is_batch_independent_and_changes_nothing(method):
    model = _model(method)
    x = torch.from_numpy(_windows(9))
    others = torch.from_numpy(_windows(20, seed=1)) * 1.5  # very different companions
    before = _state(model)
    assert model.training
    z = model.embed(x, batch_size=4)
    # reference: each window alone through a copy of the encoder in eval mode
    reference = copy.deepcopy(model.encoder).eval()
    with torch.no_grad():
        alone = torch.cat([reference(x[i:i + 1]) for i in range(len(x))])
    scale = alone.abs().mean().item()
    torch.testing.assert_close(z, alone, rtol=0, atol=1e-5 * scale)
    for i in (0, 4, 8):
        mixed = model.embed(torch.cat([others[:i + 3], x[i:i + 1], others[i + 3:]]), batch_size=64)
        torch.testing.assert_close(mixed[i + 3], alone[i], rtol=0, atol=1e-5 * scale)
    assert model.training  # mode restored
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BatchNorm statistic rewritten
    # the test can fail: train-mode encode is batch-dependent and rewrites the running statistics
    with torch.no_grad():
        in_batch = model.encode(torch.cat([others, x[:1]]))[-1]
    assert (in_batch - alone[0]).abs().max().item() > 100 * 1e-5 * scale
    assert not torch.equal(model.encoder.features[1].body[0].running_mean,
                           before["encoder.features.1.body.0.running_mean"])
    model.eval()
    model.embed(x)
    assert not model.training  # an eval model stays in eval mode


def test_embed_batch_sizes_input_types_and_no_grad(tmp_path):
    model = _model("flowfm")
    x = _windows(13, seed=2)
    ref = model.embed(torch.from_numpy(x), batch_size=13)
    assert ref.shape == (13, model.z_dim) and ref.dtype == torch.float32 and not ref.requires_grad
    for batch_size in (1, 4, 100):
        torch.testing.assert_close(model.embed(x, batch_size=batch_size), ref, rtol=0, atol=1e-6)
    np.save(tmp_path / "x.npy", x)
    torch.testing.assert_close(model.embed(np.load(tmp_path / "x.npy", mmap_mode="r")), ref, rtol=0, atol=1e-6)
    non_contiguous = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).transpose(1, 2)
    torch.testing.assert_close(model.embed(non_contiguous), ref, rtol=0, atol=1e-6)
    assert model.embed(x[:0]).shape == (0, model.z_dim)
    with pytest.raises(ValueError, match=r"shape \(N, C, L\)"):
        model.embed(x[0])
    with pytest.raises(ValueError, match="4 channels; this model expects 3"):
        model.embed(np.concatenate([x, x[:, :1]], axis=1))
    with pytest.raises(ValueError, match="batch_size"):
        model.embed(x, batch_size=0)


@pytest.mark.parametrize("method", METHODS)
def test_load_returns_an_eval_mode_model(method, tmp_path):
    model = _model(method)
    assert model.training
    model.save(tmp_path / "m")
    for loaded in (load_model(tmp_path / "m"), type(model).load(tmp_path / "m")):
        assert not loaded.training and not any(m.training for m in loaded.modules())
        x = torch.from_numpy(_windows(3))
        with torch.no_grad():
            # eval mode: encode is already batch-independent right after loading
            torch.testing.assert_close(loaded.encode(x)[1:2], loaded.encode(x[1:2]), rtol=0, atol=1e-6)


def test_embed_checks_and_converts_units():
    model = _model("flowfm")
    x = _windows(8, seed=3)
    ref = model.embed(x)
    with pytest.raises(UnitError, match=r"x .*looks like m/s\^2 \(median \|a\| = [0-9.]+; expected ~1 g\)\. "
                                        r"Pass --unit m/s2 to convert, or --unit g to use as is"):
        model.embed(x * STANDARD_GRAVITY)
    with pytest.raises(UnitError, match=r"looks like milli-g .*--unit mg"):
        model.embed(x * 1000)
    torch.testing.assert_close(model.embed(x * STANDARD_GRAVITY, unit="m/s2"), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.embed(x * 1000, unit="mg"), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(UnitError, match=r"looks like g .*--unit g"):
        model.embed(x, unit="m/s2")  # a wrong flag is caught too
    forced = model.embed(x * STANDARD_GRAVITY, unit="g")  # --unit g: used as is
    ref_forced = copy.deepcopy(model.encoder).eval()(torch.from_numpy(x * STANDARD_GRAVITY)).detach()
    torch.testing.assert_close(forced, ref_forced, rtol=0, atol=1e-5 * ref_forced.abs().mean().item())


def test_embed_resamples_other_rates_to_the_models():
    model = _model("flowfm")
    x60 = _windows(5, length=2 * LENGTH, seed=4)  # 2 x 64 samples at 60 Hz: the model's 64 samples at 30 Hz
    expected = model.embed(resample_to(x60, 60.0, 30.0, axis=-1))
    assert resample_to(x60, 60.0, 30.0, axis=-1).shape[-1] == LENGTH
    torch.testing.assert_close(model.embed(x60, fs=60.0), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(model.embed(x60), expected, atol=1e-3)  # fed as is it would differ


def test_the_probe_standardises_tiny_scale_features():
    """z of a trained encoder is tiny (mean |z| ~ 0.04, some dimensions far smaller): an L2-regularised logistic
    regression on raw z cannot reach the weights it needs; the probe's standardisation does."""
    rng = np.random.default_rng(5)
    n, d = 240, 16
    y = np.tile([0, 1, 2], n // 3)
    pid = np.repeat(np.arange(6), n // 6)
    centres = rng.standard_normal((3, d))
    z = (1e-3 * (centres[y] + 0.3 * rng.standard_normal((n, d)))).astype(np.float32)
    probe = linear_probe(z, y, pid, n_folds=3)
    assert probe["macro_f1"]["mean"] > 0.95
    raw = np.empty_like(y)  # the same folds, no scaler: near chance
    for f in range(3):
        test = np.isin(pid, [2 * f, 2 * f + 1])
        raw[test] = LogisticRegression(max_iter=1000).fit(z[~test], y[~test]).predict(z[test])
    assert classification_metrics(y, raw, pid, np.unique(y))["macro_f1"] < 0.5


# ------------------------------------------------------------------------------------------------ flowfm embed
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model"
    _model("flowfm").save(path)
    return path


def _recording(seconds, fs, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    rec = 0.2 * np.sin(2 * np.pi * 1.3 * t)[:, None] + np.array([0.0, 0.0, 1.0])
    return rec + 0.02 * rng.standard_normal((len(t), 3))


def test_embed_command_on_a_folder_and_recordings(checkpoint, tmp_path, capsys):
    model = load_model(checkpoint)
    x = _windows(10, seed=6)
    pid, y = np.repeat([7, 8], 5), np.arange(10) % 2
    save_folder(WindowDataset(x=x, pid=pid, y=y, fs=30.0), tmp_path / "folder")
    out = tmp_path / "emb.npz"
    assert main(["embed", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "folder"), "--out",
                 str(out)]) == 0
    assert "10 windows embedded" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as f:
        assert {"z", "pid", "window_index", "y"} <= set(f.files) and "start_time" not in f.files
        assert f["z"].shape == (10, model.z_dim) and f["pid"].tolist() == pid.tolist()
        assert f["window_index"].tolist() == list(range(10)) and f["y"].tolist() == y.tolist()
        torch.testing.assert_close(torch.from_numpy(f["z"]), model.embed(x), rtol=0, atol=1e-6)
        assert float(f["sample_rate_hz"]) == 30.0

    # two subjects' recordings at 100 Hz in m/s^2 (a CSV with a header, a .npy), converted by --unit m/s2
    a, b = _recording(25, 100.0, 1), _recording(14, 100.0, 2)
    np.savetxt(tmp_path / "subj_a.csv", a * STANDARD_GRAVITY, delimiter=",", header="x,y,z", comments="")
    np.save(tmp_path / "subj_b.npy", b * STANDARD_GRAVITY)
    recs = [str(tmp_path / "subj_a.csv"), str(tmp_path / "subj_b.npy")]
    assert main(["embed", "--checkpoint", str(checkpoint), "--data", *recs, "--fs", "100", "--out", str(out),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "subj_a.csv: acceleration looks like m/s^2" in err and "--unit m/s2" in err
    assert main(["embed", "--checkpoint", str(checkpoint), "--data", *recs, "--fs", "100", "--unit", "m/s2",
                 "--out", str(out), "--overwrite"]) == 0
    # reference: the windows of the one-shot pipeline at the model's rate (64 samples every 32 at 30 Hz)
    windows = [make_windows(resample_to(r, 100.0, 30.0), 30.0, window_s=LENGTH / 30, hop_s=LENGTH / 60)[0]
               for r in (a, b)]
    with np.load(out, allow_pickle=False) as f:
        n_a, n_b = len(windows[0]), len(windows[1])
        assert f["z"].shape == (n_a + n_b, model.z_dim)
        assert f["pid"].tolist() == ["subj_a"] * n_a + ["subj_b"] * n_b
        np.testing.assert_allclose(f["start_time"], np.concatenate([np.arange(n_a), np.arange(n_b)]) * 32 / 30.0)
        assert f["window_index"].tolist() == list(range(n_a)) + list(range(n_b))
        torch.testing.assert_close(torch.from_numpy(f["z"]), model.embed(np.concatenate(windows)), rtol=1e-4,
                                   atol=1e-5)


def test_embed_command_resamples_a_folder_at_another_rate(checkpoint, tmp_path):
    model = load_model(checkpoint)
    x60 = _windows(4, length=2 * LENGTH, seed=7)
    save_folder(WindowDataset(x=x60, pid=np.arange(4), fs=60.0), tmp_path / "f60")
    out = tmp_path / "e.npz"
    assert main(["embed", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "f60"), "--out", str(out)]) == 0
    with np.load(out) as f:
        torch.testing.assert_close(torch.from_numpy(f["z"]), model.embed(resample_to(x60, 60.0, 30.0, axis=-1)),
                                   rtol=0, atol=1e-6)


def test_embed_command_refuses_bad_input(checkpoint, tmp_path, capsys):
    out = tmp_path / "e.npz"

    def fails(*args, match):
        assert main(["embed", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert match in err, err
        assert not out.exists()

    fails("--checkpoint", str(tmp_path / "nothing"), "--data", "hapt", match="does not exist")
    x = _windows(6, seed=8)
    save_folder(WindowDataset(x=x * 1000, pid=np.arange(6), fs=30.0), tmp_path / "mg")
    fails("--checkpoint", str(checkpoint), "--data", str(tmp_path / "mg"),
          match="X.npy: acceleration looks like milli-g")
    np.save(tmp_path / "rec.npy", _recording(10, 50.0))
    fails("--checkpoint", str(checkpoint), "--data", str(tmp_path / "rec.npy"), match="--fs HZ")
    np.save(tmp_path / "five.npy", np.concatenate([_recording(10, 50.0)] * 2, axis=1)[:, :5])
    fails("--checkpoint", str(checkpoint), "--data", str(tmp_path / "five.npy"), "--fs", "50",
          match="has 5 columns; the model expects 3 channels (x, y, z)")
    # windows of another length at an unknown rate: refused, never fed as is
    folder = tmp_path / "norate"
    folder.mkdir()
    np.save(folder / "X.npy", _windows(4, length=100).transpose(0, 2, 1))
    np.save(folder / "pid.npy", np.arange(4))
    fails("--checkpoint", str(checkpoint), "--data", str(folder), match="sampling rate is unknown")
    assert main(["embed", "--checkpoint", str(checkpoint), "--data", str(folder), "--fs", "30", "--out",
                 str(out)]) == 0  # stated: 100 samples at 30 Hz, a longer window than the model's (noted)
    assert "the model was trained on" in capsys.readouterr().err


def test_checkpoint_stores_the_window_spec(checkpoint):
    doc = json.loads((checkpoint / "config.json").read_text())
    assert doc["data"] == {"sample_rate_hz": 30.0, "window_length": LENGTH, "hop": LENGTH // 2, "unit": "g",
                           "channels": ["x", "y", "z"]}
    assert flowfm.FlowFM.load(checkpoint).data_spec.window_length == LENGTH
