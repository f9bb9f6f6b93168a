"""The everyday path's pieces: the shipped model (manifest-checked), `prepare`'s folder, the saved classifier
(reload, tamper check, linear head = scikit-learn's model) and `predict`'s CSV."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import flowfm
from flowfm import zoo
from flowfm.classifier import ActivityClassifier, ClassifierError, train_classifier
from flowfm.cli import main

pd = pytest.importorskip("pandas")


def test_shipped_model_loads_in_eval_mode_and_is_batch_independent():
    assert flowfm.pretrained() == ["small-hapt"]
    model = flowfm.pretrained("small-hapt")
    assert not model.training and model.data_spec.sample_rate_hz == 30.0
    x = flowfm.data.load_hapt().x[:6]
    z_all = model.embed(x)
    z_one = model.embed(x[2:3])
    assert torch.isfinite(z_all).all()
    torch.testing.assert_close(z_all[2:3], z_one, rtol=1e-5, atol=1e-6)


def test_shipped_model_manifest_catches_tampering(tmp_path, monkeypatch):
    folder = tmp_path / "small_hapt"
    shutil.copytree(zoo.ROOT / "small_hapt", folder)
    monkeypatch.setattr(zoo, "ROOT", tmp_path)
    assert zoo.model_folder("small-hapt") == folder
    doc = json.loads((folder / "config.json").read_text())
    doc["method"] = "diffusion"
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(zoo.PretrainedError, match="config.json.*SHA-256"):
        zoo.model_folder("small-hapt")
    with pytest.raises(zoo.PretrainedError, match="no shipped model 'big'"):
        zoo.model_folder("big")


def labelled_windows(n_per=24, subjects=("a", "b", "c", "d"), seed=0):
    """Two classes that differ in gravity direction and motion, four subjects: (x (N, 3, 300), y, pid)."""
    rng = np.random.default_rng(seed)
    xs, ys, ps = [], [], []
    t = np.arange(300) / 30
    for s in subjects:
        for k in range(n_per):
            moving = k % 2 == 0
            g = np.array([0.0, 0.0, 1.0]) if moving else np.array([0.0, 0.6, 0.8])
            w = g[:, None] + (0.3 * np.sin(2 * np.pi * 2 * t + rng.uniform(0, 6)) if moving else 0) \
                + rng.normal(0, 0.02, (3, 300))
            xs.append(w), ys.append("walk" if moving else "sit"), ps.append(s)
    return np.asarray(xs, np.float32), np.asarray(ys), np.asarray(ps)


@pytest.fixture(scope="module")
def model():
    return flowfm.pretrained("small-hapt")


def test_linear_classifier_equals_sklearn_and_round_trips(model, tmp_path):
    from sklearn.linear_model import LogisticRegression

    x, y, pid = labelled_windows()
    clf = train_classifier(model, x, y, pid, "linear", val_fraction=0.0)
    z = model.embed(x).numpy()
    mean, std = z.mean(0), z.std(0).clip(1e-8)
    ref = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=0).fit((z - mean) / std, y)
    np.testing.assert_allclose(clf.predict_proba(x), ref.predict_proba((z - mean) / std), atol=1e-4)
    assert (clf.predict(x) == y).mean() > 0.9
    clf.save(tmp_path / "clf")
    again = ActivityClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(again.predict_proba(x[:7]), clf.predict_proba(x[:7]))
    assert again.label_names == ["sit", "walk"] and again.data_spec == model.data_spec
    with pytest.raises(ValueError, match="takes 300"):
        again.predict_proba(x[:, :, :200])
    doc = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    doc["label_names"] = ["walk", "sit"]  # swapped labels must not load silently
    (tmp_path / "clf" / "classifier.json").write_text(json.dumps(doc))
    with pytest.raises(ClassifierError, match="SHA-256"):
        ActivityClassifier.load(tmp_path / "clf")


def test_finetune_mode_trains_with_validation_subjects(model):
    x, y, pid = labelled_windows(n_per=12)
    clf = train_classifier(model, x, y, pid, "finetune", max_epochs=2, val_fraction=0.25)
    assert clf.metadata["validation_subjects"] and len(clf.metadata["validation_subjects"]) == 1
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    for name, p in model.encoder.state_dict().items():  # the source model is never changed
        torch.testing.assert_close(p, flowfm.pretrained("small-hapt").encoder.state_dict()[name])
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_classifier(model, x[y == "sit"], y[y == "sit"], pid[y == "sit"], "linear")


def test_cli_finetune_predict_on_a_folder(model, tmp_path, capsys):
    x, y, pid = labelled_windows()
    flowfm.data.save_folder(flowfm.data.WindowDataset(x=x, y=y, pid=pid), tmp_path / "ds")
    assert main(["finetune", "--checkpoint", "small-hapt", "--data", str(tmp_path / "ds"), "--mode", "mlp",
                 "--max-epochs", "3", "--quiet", "--out", str(tmp_path / "clf")]) == 0
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(tmp_path / "clf"), "--data", str(tmp_path / "ds"), "--out", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == len(x) and list(pred.columns[-2:]) == ["p_sit", "p_walk"]
    assert (pred["predicted"] == pred["true_label"]).mean() > 0.8
    assert main(["predict", "--model", str(tmp_path / "clf"), "--data", str(tmp_path / "ds"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_prepare_folder_contents_and_refusals(tmp_path):
    t = np.arange(100 * 45) / 100.0
    acc = np.stack([0.1 * np.sin(t), 0.1 * np.cos(t), np.ones_like(t)], 1)
    df = pd.DataFrame({"time": 1.7e9 + t, "x": acc[:, 0], "y": acc[:, 1], "z": acc[:, 2],
                       "label": np.where(t < 22, "a", "b")})
    df.to_csv(tmp_path / "s1.csv", index=False)
    out = tmp_path / "ds"
    assert main(["prepare", str(tmp_path / "s1.csv"), "--out", str(out)]) == 0
    ds = flowfm.data.load_folder(out)
    times = np.load(out / "time.npy")
    # 45 s -> 8 windows (starts 0, 5, ..., 35 s); [15, 25) s is 70 % a (below 80 %): dropped; [20, 30) is 80 % b
    assert ds.x.shape[1:] == (3, 300) and times.shape == (len(ds),) and set(ds.y) == {"a", "b"}
    assert len(ds) == 7 and times[0] == pytest.approx(1.7e9)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sources"][0]["fs"] == 100.0 and meta["time"] == "epoch seconds"
    assert main(["prepare", str(tmp_path / "s1.csv"), "--out", str(out)]) == 2  # not empty, no --overwrite
    assert main(["prepare", str(tmp_path / "s1.csv"), "--out", str(out), "--overwrite", "--keep-unlabelled"]) == 0
    assert len(flowfm.data.load_folder(out)) == 8
