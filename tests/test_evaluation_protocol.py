"""The leak-free subject-wise protocol (docs/design.md §5): linear / mlp / finetune / scratch, validation subjects,
early
stopping, paired differences, report rendering and the evaluate CLI.

The leak tests spy on the fitting entry points themselves (``fit.fit_classifier`` / ``fit.predict`` and the
linear probe's sklearn pipeline) and read the subject of every window they receive from a marker written into
the window, so they check what the classifiers actually saw, not what the split code claims.
"""
import json

import numpy as np
import pytest
import torch
from torch import nn

import flowfm.evaluation.fit as fit_module
import flowfm.evaluation.probe as probe_module
import flowfm.evaluation.protocol as protocol_module
from flowfm.cli import main
from flowfm.data import WindowDataset, save_folder
from flowfm.evaluation import (FitConfig, LeakError, bar_plot, carve_validation, check_split, class_weights,
                               encode_windows, encoder_model, evaluate_encoder, fit_classifier, markdown_table,
                               paired_differences, predict, subject_folds)
from flowfm.evaluation.metrics import summarize

MARK = 100.0   # x[:, 0, 0] = MARK + subject id: the subject of a window, readable wherever the window goes
N_SUBJECTS, PER_SUBJECT, LENGTH = 6, 8, 32


def _marked_data():
    rng = np.random.default_rng(0)
    pid = np.repeat(np.arange(N_SUBJECTS), PER_SUBJECT)
    y = np.tile(np.arange(2), len(pid) // 2)
    x = rng.standard_normal((len(pid), 3, LENGTH)).astype(np.float32)
    x[:, 0, 0] = MARK + pid
    return x, y, pid


class _PassThrough(nn.Module):
    """z = x[:, 0, :4] * scale: frozen features keep the subject marker in column 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.out_dim = 4

    def forward(self, x):
        return x[:, 0, :4] * self.scale


class _StubModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = _PassThrough()

    def encode(self, x):
        return self.encoder(x)


def _subjects(inputs) -> set:
    a = np.asarray(inputs)
    if len(a) == 0:
        return set()
    col = a[:, 0, 0] if a.ndim == 3 else a[:, 0]
    return set(np.rint(col - MARK).astype(int).tolist())


@pytest.fixture
def spy(monkeypatch):
    """Records, per fit, the subjects of the training, validation and test windows the classifier received."""
    records, state = [], {"in_fit": False}
    real_fit, real_predict = fit_module.fit_classifier, fit_module.predict

    def fit_spy(model, groups, x_fit, y_fit, x_val, y_val, *args, **kwargs):
        records.append({"fit": _subjects(x_fit), "val": _subjects(x_val), "test": None})
        state["in_fit"] = True
        try:
            return real_fit(model, groups, x_fit, y_fit, x_val, y_val, *args, **kwargs)
        finally:
            state["in_fit"] = False

    def predict_spy(model, x, *args, **kwargs):
        if not state["in_fit"]:       # outside fitting = the fold's test windows
            records[-1]["test"] = _subjects(x)
        return real_predict(model, x, *args, **kwargs)

    class PipelineSpy:
        def __init__(self, *steps):
            from sklearn.pipeline import make_pipeline
            self.inner = make_pipeline(*steps)

        def fit(self, X, y):
            records.append({"fit": _subjects(X), "val": set(), "test": None})
            self.inner.fit(X, y)
            return self

        def predict(self, X):
            records[-1]["test"] = _subjects(X)
            return self.inner.predict(X)

    monkeypatch.setattr(fit_module, "fit_classifier", fit_spy)
    monkeypatch.setattr(fit_module, "predict", predict_spy)
    monkeypatch.setattr(probe_module, "make_pipeline", PipelineSpy)
    return records


def assert_leak_free(records, k=None):
    """No test subject in any fit or validation set; fit and validation disjoint; k labelled subjects at most."""
    assert records, "the spy saw no fit"
    for r in records:
        assert r["test"], "a fit was not followed by a test prediction"
        assert not r["fit"] & r["test"], f"test subject(s) {r['fit'] & r['test']} used for training"
        assert not r["val"] & r["test"], f"test subject(s) {r['val'] & r['test']} used for validation"
        assert not r["fit"] & r["val"], f"subject(s) {r['fit'] & r['val']} in both fit and validation"
        if k is not None:
            assert len(r["fit"] | r["val"]) == k
            if k == 1:
                assert not r["val"], "k = 1 must not validate on its only subject"


CFG = FitConfig(max_epochs=2, patience=1, batch_size=16)


@pytest.mark.parametrize("mode", ["linear", "mlp", "finetune", "scratch"])
@pytest.mark.parametrize("loso", [False, True])
@pytest.mark.parametrize("k", [None, 3, 1])
def test_no_test_subject_is_ever_trained_or_validated_on(spy, mode, loso, k):
    x, y, pid = _marked_data()
    evaluate_encoder(_StubModel(), x, y, pid, mode, seeds=1, n_folds=3, loso=loso, label_subjects=k, draws=2,
                     config=CFG)
    assert_leak_free(spy, k)
    folds = subject_folds(pid, 3, loso)
    expected = sorted(tuple(sorted(set(pid[test]))) for _, test in folds)
    draws = 1 if k is None else 2
    assert sorted(tuple(sorted(r["test"])) for r in spy) == sorted(expected * draws)
    if mode != "linear" and k != 1:
        assert all(r["val"] for r in spy), "every fold with >= 2 labelled subjects validates on held-out subjects"


def test_the_leak_check_catches_a_leaky_split(spy, monkeypatch):
    # the checker itself flags hand-made leaky records
    with pytest.raises(AssertionError, match="validation"):
        assert_leak_free([{"fit": {0, 1}, "val": {2}, "test": {2, 3}}])
    with pytest.raises(AssertionError, match="training"):
        assert_leak_free([{"fit": {0, 3}, "val": set(), "test": {3}}])
    pid = np.repeat(np.arange(4), 3)
    with pytest.raises(LeakError, match="validation"):
        check_split(pid, np.arange(0, 6), np.arange(6, 9), np.arange(6, 12))

    # a deliberately leaky protocol (labelled windows drawn from ALL subjects) is refused by the protocol ...
    x, y, pid = _marked_data()
    monkeypatch.setattr(protocol_module, "label_subject_draw", lambda pid_, train_idx, k, seed: np.arange(len(pid_)))
    with pytest.raises(LeakError):
        evaluate_encoder(_StubModel(), x, y, pid, "mlp", seeds=1, n_folds=3, config=CFG)
    # ... and, with the protocol's own check switched off, caught by the spy on what the classifier saw
    monkeypatch.setattr(protocol_module, "check_split", lambda *a, **k: None)
    evaluate_encoder(_StubModel(), x, y, pid, "mlp", seeds=1, n_folds=3, config=CFG)
    with pytest.raises(AssertionError, match="test subject"):
        assert_leak_free(spy)


def test_validation_subjects_are_carved_from_training_subjects():
    pid = np.repeat(np.arange(10), 4)
    labelled = np.flatnonzero(pid < 8)                       # 8 training subjects
    fit_idx, val_idx = carve_validation(pid, labelled, 0.2, seed=3)
    assert len(set(pid[val_idx])) == 2 and len(set(pid[fit_idx])) == 6
    assert not set(pid[fit_idx]) & set(pid[val_idx]) and set(pid[val_idx]) <= set(range(8))
    again = carve_validation(pid, labelled, 0.2, seed=3)
    assert np.array_equal(again[1], val_idx)
    fit_idx, val_idx = carve_validation(pid, np.flatnonzero(pid < 2), 0.2, seed=0)   # k = 2: 1 fit + 1 validation
    assert len(set(pid[fit_idx])) == 1 and len(set(pid[val_idx])) == 1
    fit_idx, val_idx = carve_validation(pid, np.flatnonzero(pid == 4), 0.2, seed=0)  # k = 1: no validation
    assert len(val_idx) == 0 and len(fit_idx) == 4
    with pytest.raises(ValueError, match="val_fraction"):
        carve_validation(pid, labelled, 1.0, seed=0)
    with pytest.raises(ValueError, match="label_subjects"):
        x, y, pid6 = _marked_data()
        evaluate_encoder(_StubModel(), x, y, pid6, "mlp", n_folds=3, label_subjects=5, config=CFG)


def _flip_task():
    """1-D task whose validation mapping is the opposite of the training mapping: the model starts right on
    validation and training gradually makes it wrong, so the best validation epoch is the first."""
    x_fit = np.array([[1.0], [-1.0]] * 16, dtype=np.float32)
    y_fit = np.array([0, 1] * 16)
    x_val, y_val = x_fit[:8].copy(), 1 - y_fit[:8]
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.bias.zero_()
    return model, x_fit, y_fit, x_val, y_val


def test_early_stopping_restores_the_best_validation_weights():
    model, x_fit, y_fit, x_val, y_val = _flip_task()
    cfg = FitConfig(max_epochs=30, patience=30, batch_size=32, lr=0.1, weight_decay=0.0)
    result = fit_classifier(model, [{"params": model.parameters(), "lr": cfg.lr}], x_fit, y_fit, x_val, y_val, 2,
                            cfg, torch.Generator().manual_seed(0))
    f1 = [h["val_f1"] for h in result.history]
    assert f1[0] == 1.0 and f1[-1] < 0.5, f"the task should flip during training: {f1}"
    assert result.best_epoch == 1 and result.best_val_f1 == 1.0 and result.epochs == 30
    assert np.array_equal(predict(model, x_val), y_val), "the best (first) epoch's weights were not restored"

    model, x_fit, y_fit, x_val, y_val = _flip_task()
    cfg = FitConfig(max_epochs=30, patience=3, batch_size=32, lr=0.01, weight_decay=0.0)
    result = fit_classifier(model, [{"params": model.parameters(), "lr": cfg.lr}], x_fit, y_fit, x_val, y_val, 2,
                            cfg, torch.Generator().manual_seed(0))
    assert result.epochs == 1 + 3, "stops after `patience` epochs without a strict improvement"

    model, x_fit, y_fit, _, _ = _flip_task()       # no validation (k = 1): the fixed budget, last weights
    result = fit_classifier(model, [{"params": model.parameters(), "lr": 0.1}], x_fit, y_fit, x_fit[:0],
                            y_fit[:0], 2, cfg, torch.Generator().manual_seed(0))
    assert result.epochs == 30 and result.best_val_f1 is None
    assert np.array_equal(predict(model, x_fit), y_fit)


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0, 0.0]))
    # weighted per-class totals are equal: every present class counts as much as the others
    y = np.array([0] * 9 + [1])
    w = class_weights(y, 2)
    assert float(w[0] * 9) == pytest.approx(float(w[1] * 1))


def _separable(n_subjects=6, per=16, length=64):
    rng = np.random.default_rng(1)
    pid = np.repeat(np.arange(n_subjects), per)
    y = np.tile(np.arange(3), len(pid) // 3 + 1)[:len(pid)]
    t = np.arange(length) / 30.0
    freq = np.array([1.0, 3.0, 6.0])[y]
    x = 0.5 * np.sin(2 * np.pi * freq[:, None, None] * t) * np.array([1.0, 0.6, 0.3])[None, :, None]
    return (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32), y, pid


@pytest.mark.parametrize("mode", ["mlp", "finetune"])
def test_separable_data_is_learned_with_the_tiny_preset(mode):
    x, y, pid = _separable()
    model, name = encoder_model("random", preset="tiny", window=x.shape[2])
    report = evaluate_encoder(model, x, y, pid, mode, seeds=1, n_folds=3, name=name,
                              config=FitConfig(max_epochs=8, patience=3, batch_size=32))
    assert report["macro_f1_mean"] > 0.9, report["macro_f1_mean"]
    d = report["per_seed"][0]["draws"][0]
    assert len(d["epochs"]) == 3 and all(1 <= e <= 8 for e in d["epochs"]) and d["val_subjects"] == [1, 1, 1]
    assert json.loads(json.dumps(report))["mode"] == mode


def _fake_report(name, values, mode="linear", k=None):
    """values[seed][draw] = macro-F1."""
    per_seed = [{"seed": s, "seconds": 1.0, "macro_f1": float(np.mean(v)), "kappa": float(np.mean(v)) - 0.1,
                 "subject_f1_mean": float(np.mean(v)),
                 "draws": [{"draw": d, "macro_f1": f, "kappa": f - 0.1, "subject_f1_mean": f, "subject_f1_sd": 0.05,
                            "epochs": [5, 6], "seconds": 0.5} for d, f in enumerate(v)]}
                for s, v in enumerate(values)]
    summary = {key: summarize([s[key] for s in per_seed]) for key in ("macro_f1", "kappa", "subject_f1_mean")}
    summary["epochs"] = summarize([5, 6])
    return {"model": name, "data": "toy", "mode": mode, "folds": 5, "loso": False, "label_subjects": k,
            "draws": len(values[0]), "seeds": list(range(len(values))), "fit_config": None, "per_seed": per_seed,
            "summary": summary, "seconds": 3.0}


def test_paired_differences_on_hand_made_numbers():
    base = _fake_report("random", [[0.70], [0.75], [0.80]])
    win = paired_differences(_fake_report("a", [[0.80], [0.82], [0.84]]), base)
    assert win["values"] == pytest.approx([0.10, 0.07, 0.04])
    assert win["mean"] == pytest.approx(0.07) and win["sd"] == pytest.approx(0.03)
    assert win["n"] == 3 and win["n_positive"] == 3 and win["verdict"] == "win"
    tie = paired_differences(_fake_report("b", [[0.75], [0.72], [0.81]]), base)
    assert tie["mean"] == pytest.approx(0.01) and tie["sd"] == pytest.approx(0.04)
    assert tie["verdict"] == "tie" and tie["n_positive"] == 2
    loss = paired_differences(base, _fake_report("a", [[0.80], [0.82], [0.84]]))
    assert loss["verdict"] == "loss" and loss["mean"] == pytest.approx(-0.07)
    draws = paired_differences(_fake_report("c", [[0.8, 0.9]]), _fake_report("r", [[0.7, 0.7]]))
    assert draws["pairs"] == [[0, 0], [0, 1]] and draws["mean"] == pytest.approx(0.15)
    assert paired_differences(_fake_report("c", [[0.8]]), _fake_report("r", [[0.7]]))["verdict"] == "n/a"
    with pytest.raises(ValueError, match="label_subjects"):
        paired_differences(_fake_report("c", [[0.8]], k=3), base)


def test_markdown_table_and_bar_plot(tmp_path):
    reports = {"random init": _fake_report("random", [[0.70], [0.75], [0.80]]),
               "scratch": _fake_report("scratch", [[0.72], [0.74], [0.79]], mode="scratch"),
               "flowfm": _fake_report("flowfm", [[0.80], [0.82], [0.84]], mode="mlp")}
    md = markdown_table(reports, baselines=["random init", "scratch"])
    assert md.count("\n| ") == 4            # header + 3 rows
    assert "Δmacro-F1 vs random init" in md and "+0.070 ± 0.030 (3/3 >0, win)" in md and "(baseline)" in md
    assert "data toy" in md and "seeds 3" in md
    with pytest.raises(ValueError, match="baseline"):
        markdown_table(reports, baselines=["nope"])
    png = bar_plot(reports, tmp_path / "plots" / "f1.png", baselines=["random init", "scratch"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "plots").glob("*tmp*"))


def test_bar_plot_names_the_seed_count_of_a_row_with_fewer_seeds(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    seen = {}
    original_ticks, original_title = Axes.set_xticks, Axes.set_title
    monkeypatch.setattr(Axes, "set_xticks", lambda self, ticks, labels=None, **kw: seen.setdefault("labels", labels)
                        and original_ticks(self, ticks, labels, **kw))
    monkeypatch.setattr(Axes, "set_title", lambda self, text, **kw: seen.setdefault("title", text)
                        and original_title(self, text, **kw))
    reports = {"variant": _fake_report("variant", [[0.80], [0.82]]),
               "flowfm": _fake_report("flowfm", [[0.80], [0.82], [0.84]])}
    bar_plot(reports, tmp_path / "f1.png")
    assert seen["labels"][0].endswith("\n2 seeds") and "seeds" not in seen["labels"][1]
    assert "seeds 3" in seen["title"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    x, y, pid = _separable(n_subjects=6, per=12)
    path = tmp_path_factory.mktemp("data") / "toy"
    save_folder(WindowDataset(x=x, pid=pid, y=y), path)
    return path


def test_cli_evaluate_mlp_and_scratch(folder, tmp_path, capsys):
    common = ["evaluate", "--data", str(folder), "--preset", "tiny", "--folds", "3", "--max-epochs", "2",
              "--patience", "1", "--batch-size", "32", "--quiet"]
    out = tmp_path / "mlp.json"
    assert main(common + ["--encoder", "random", "--mode", "mlp", "--seeds", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "mlp" and report["seeds"] == [0, 1] and report["folds"] == 3
    assert "| seed | draw |" in out.with_suffix(".md").read_text()
    out = tmp_path / "scratch.json"
    assert main(common + ["--encoder", "scratch", "--mode", "finetune", "--label-subjects", "2", "--draws", "1",
                          "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "scratch" and report["label_subjects"] == 2
    assert report["per_seed"][0]["draws"][0]["val_subjects"] == [1, 1, 1]


def test_cli_evaluate_clear_errors(folder, tmp_path, capsys):
    base = ["evaluate", "--data", str(folder), "--preset", "tiny", "--folds", "3"]
    assert main(base + ["--checkpoint", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base + ["--encoder", "random", "--mode", "finetune"]) == 2
    assert "--encoder scratch" in capsys.readouterr().err
    assert main(base + ["--encoder", "random", "--label-subjects", "9"]) == 2
    assert "label_subjects" in capsys.readouterr().err
    assert main(base) == 2
    assert "--checkpoint" in capsys.readouterr().err


def _tiny_random_model(length=64):
    factory, _ = encoder_model("random", preset="tiny", window=length)
    return factory(0)


def test_encode_windows_stages_readout_shape_and_blocks():
    from flowfm.encoder import BlurPool1d

    model = _tiny_random_model()
    x = np.random.default_rng(0).standard_normal((10, 3, 64)).astype(np.float32)
    feats = encode_windows(model, x, batch_size=4, readout="stages")      # 3 batches
    enc = model.encoder
    assert feats.shape == (10, sum(enc.stage_dims)) and feats.dtype == np.float32
    first = next(m for m in enc.features if isinstance(m, BlurPool1d))
    pools = []
    handle = first.register_forward_hook(lambda _m, _i, out: pools.append(out.mean(dim=-1)))
    try:
        with torch.no_grad():
            z = enc.eval()(torch.from_numpy(x))
    finally:
        handle.remove()
    np.testing.assert_allclose(feats[:, :enc.stage_dims[0]], pools[0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(feats[:, -enc.out_dim:], z.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(feats[:, -enc.out_dim:], encode_windows(model, x, batch_size=4), rtol=0, atol=1e-6)


def test_bad_readouts_are_rejected():
    model = _tiny_random_model()
    x, y, pid = _separable(n_subjects=3, per=3)
    with pytest.raises(ValueError, match=r"readout='pooled'.*\('z', 'stages'\)"):
        encode_windows(model, x, readout="pooled")
    with pytest.raises(ValueError, match=r"readout='pooled'.*\('z', 'stages'\)"):
        evaluate_encoder(model, x, y, pid, "linear", readout="pooled")
    for mode in ("finetune", "scratch"):
        with pytest.raises(ValueError, match=r"readout='stages'.*frozen-feature modes"):
            evaluate_encoder(model, x, y, pid, mode, readout="stages")


def test_linear_evaluation_with_the_stages_readout(monkeypatch):
    x, y, pid = _separable(n_subjects=6, per=9)
    model = _tiny_random_model(x.shape[2])
    widths, real_probe = [], protocol_module.linear_probe

    def probe_spy(feats, *args, **kwargs):
        widths.append(feats.shape[1])
        return real_probe(feats, *args, **kwargs)

    monkeypatch.setattr(protocol_module, "linear_probe", probe_spy)
    report = evaluate_encoder(model, x, y, pid, "linear", seeds=1, n_folds=3, readout="stages")
    assert widths == [sum(model.encoder.stage_dims)]
    assert json.loads(json.dumps(report))["readout"] == "stages"
    assert 0.0 <= report["macro_f1_mean"] <= 1.0
    assert "linear, stages" in markdown_table({"m": report})


def test_cli_evaluate_readout(folder, tmp_path, capsys):
    base = ["evaluate", "--data", str(folder), "--preset", "tiny", "--folds", "3", "--quiet"]
    out = tmp_path / "stages.json"
    assert main(base + ["--encoder", "random", "--readout", "stages", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "linear" and report["readout"] == "stages"
    assert main(base + ["--encoder", "scratch", "--mode", "finetune", "--readout", "stages"]) == 2
    assert "frozen-feature modes" in capsys.readouterr().err


def _decode(inputs):
    """(scales, subjects) of windows or stub features: column 0 holds (MARK + subject) * scale, scale in 1..9."""
    a = np.asarray(inputs)
    col = (a[:, 0, 0] if a.ndim == 3 else a[:, 0]).astype(np.float64)
    scale = np.floor(col / MARK)
    return set(scale.astype(int).tolist()), set(np.rint(col / scale - MARK).astype(int).tolist())


@pytest.mark.parametrize("mode", ["linear", "mlp", "finetune"])
def test_per_fold_models_serve_their_own_fold_only(monkeypatch, mode):
    """Inductive evaluation: fold f's classifier is fit and tested on the features of fold f's model alone."""
    x, y, pid = _marked_data()
    fold_of = {int(s): f for f, (_, test) in enumerate(subject_folds(pid, 3)) for s in np.unique(pid[test])}
    models = protocol_module.PerFold(_StubModel() for _ in range(3))
    for f, m in enumerate(models):
        m.encoder.scale.data.fill_(f + 2.0)   # fold f's features carry scale f + 2 in their marker column
    fits = []
    real_fit, real_predict = fit_module.fit_classifier, fit_module.predict

    def fit_spy(net, groups, x_fit, *args, **kwargs):
        scales, _ = _decode(x_fit)
        if mode == "finetune":
            scales = {int(net.encoder.scale.item())}
        fits.append({"scales": scales, "test": None})
        return real_fit(net, groups, x_fit, *args, **kwargs)

    def predict_spy(net, x_test, *args, **kwargs):
        scales, subjects = _decode(x_test)
        fits[-1]["test"] = subjects
        if mode != "finetune":
            assert scales == fits[-1]["scales"]
        return real_predict(net, x_test, *args, **kwargs)

    class PipelineSpy:
        def __init__(self, *steps):
            from sklearn.pipeline import make_pipeline
            self.inner = make_pipeline(*steps)

        def fit(self, X, y_fit):
            fits.append({"scales": _decode(X)[0], "test": None})
            self.inner.fit(X, y_fit)
            return self

        def predict(self, X):
            scales, fits[-1]["test"] = _decode(X)
            assert scales == fits[-1]["scales"]
            return self.inner.predict(X)

    monkeypatch.setattr(fit_module, "fit_classifier", fit_spy)
    monkeypatch.setattr(fit_module, "predict", predict_spy)
    monkeypatch.setattr(probe_module, "make_pipeline", PipelineSpy)
    report = evaluate_encoder(models, x, y, pid, mode, seeds=1, n_folds=3, config=CFG)
    assert report["pretraining"].startswith("per fold") and len(fits) == 3
    for record in fits:
        folds = {fold_of[s] for s in record["test"]}
        assert len(folds) == 1 and record["scales"] == {folds.pop() + 2}
    with pytest.raises(ValueError, match="2 per-fold models for 3 folds"):
        evaluate_encoder(protocol_module.PerFold(models[:2]), x, y, pid, mode, seeds=1, n_folds=3, config=CFG)


def test_per_fold_copies_of_one_model_equal_the_shared_model():
    x, y, pid = _separable(n_subjects=6, per=9)
    model = _tiny_random_model(x.shape[2])
    shared = evaluate_encoder(model, x, y, pid, "linear", seeds=2, n_folds=3, label_subjects=2, draws=2)
    per_fold = evaluate_encoder(lambda seed: protocol_module.PerFold([model] * 3), x, y, pid, "linear", seeds=2,
                                n_folds=3, label_subjects=2, draws=2)
    assert [s["macro_f1"] for s in per_fold["per_seed"]] == [s["macro_f1"] for s in shared["per_seed"]]
    assert shared["pretraining"] == "one model for all folds"
