"""`flowfm evaluate --out`: per-class scores and confusion matrices that agree with scikit-learn on the saved
predictions, four distinct output files that never overwrite each other or existing files, provenance."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

import flowfm
from flowfm.cli import main


def dataset(tmp_path):
    rng = np.random.default_rng(1)
    n, subjects = 20, ["s1", "s2", "s3", "s4"]
    y = np.tile(np.repeat(["lie", "run", "sit"], [7, 7, 6]), len(subjects))
    pid = np.repeat(subjects, n)
    base = {"lie": [1.0, 0, 0], "run": [0, 0, 1.0], "sit": [0, 0.7, 0.7]}
    x = np.stack([np.asarray(base[k])[:, None] + rng.normal(0, 0.3 if k == "run" else 0.05, (3, 300)) for k in y])
    flowfm.data.save_folder(flowfm.data.WindowDataset(x=x.astype(np.float32), y=y, pid=pid), tmp_path / "ds")
    return y, pid


def test_outputs_agree_with_sklearn_and_never_overwrite(tmp_path, capsys):
    y, pid = dataset(tmp_path)
    args = ["evaluate", "--encoder", "random", "--preset", "tiny", "--data", str(tmp_path / "ds"), "--folds", "2",
            "--seeds", "2", "--quiet", "--out", str(tmp_path / "rep.md")]
    assert main(args) == 0
    files = {p.name for p in tmp_path.iterdir()}
    assert {"rep.json", "rep.md", "rep_confusion.png", "rep_predictions.csv"} <= files
    report = json.loads((tmp_path / "rep.json").read_text())
    assert report["provenance"]["flowfm_version"] == flowfm.__version__
    assert len(report["provenance"]["data_sha256"]) == 64 and report["provenance"]["command"].startswith("flowfm evaluate --encoder random")
    rows = list(csv.DictReader(open(tmp_path / "rep_predictions.csv")))
    assert len(rows) == 2 * len(y)  # every window once per seed (GroupKFold tests each subject once)
    for seed in (0, 1):
        got = [r for r in rows if r["seed"] == str(seed)]
        true, pred = np.array([r["true"] for r in got]), np.array([r["predicted"] for r in got])
        np.testing.assert_array_equal(true, y)
        np.testing.assert_array_equal([r["pid"] for r in got], pid)
        draw = report["per_seed"][seed]["draws"][0]
        labels = ["lie", "run", "sit"]
        p, r, f, n = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
        for k, label in enumerate(labels):
            assert draw["per_class"][label] == pytest.approx(
                {"precision": p[k], "recall": r[k], "f1": f[k], "support": n[k]})
        assert draw["confusion"]["matrix"] == confusion_matrix(true, pred, labels=labels).tolist()
        assert np.sum(draw["confusion"]["matrix"]) == len(y)
    assert "Confusion matrix" in (tmp_path / "rep.md").read_text()
    before = (tmp_path / "rep.json").read_bytes()
    assert main(args[:-1] + [str(tmp_path / "rep.json")]) == 2  # same base name: refused, nothing rewritten
    assert "already exist" in capsys.readouterr().err and (tmp_path / "rep.json").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
