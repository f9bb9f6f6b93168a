"""Subject-wise protocol: folds, low-label draws, metrics, linear probe on known-answer data."""
import numpy as np
import pytest

from flowfm.evaluation import classification_metrics, label_subject_draw, linear_probe, subject_folds


def _pid(n_subjects=10, per=20):
    return np.repeat(np.arange(n_subjects), per)


def test_folds_test_every_subject_once_and_never_train_on_it():
    pid = _pid()
    folds = subject_folds(pid, 5)
    tested = np.concatenate([np.unique(pid[test]) for _, test in folds])
    assert sorted(tested) == list(range(10))
    for train, test in folds:
        assert not set(pid[train]) & set(pid[test])
        assert len(train) + len(test) == len(pid)
    assert len(subject_folds(pid, loso=True)) == 10


def test_folds_reject_too_few_subjects():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        subject_folds(np.zeros(10), 5)
    with pytest.raises(ValueError, match="n_folds"):
        subject_folds(_pid(3), 5)


def test_label_subject_draw_keeps_k_training_subjects():
    pid = _pid()
    train, _ = subject_folds(pid, 5)[0]
    chosen = label_subject_draw(pid, train, 3, seed=1)
    assert len(np.unique(pid[chosen])) == 3 and set(chosen) <= set(train)
    assert np.array_equal(chosen, label_subject_draw(pid, train, 3, seed=1))
    assert np.array_equal(label_subject_draw(pid, train, None, seed=1), train)
    with pytest.raises(ValueError, match="label_subjects"):
        label_subject_draw(pid, train, 99, seed=0)


def test_metrics_match_hand_values():
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
    assert m["macro_f1"] == 1.0 and m["kappa"] == 1.0
    m = classification_metrics(y, np.array([1, 1, 0, 0]), np.array([0, 1, 0, 1]))
    assert m["macro_f1"] == 0.0 and m["kappa"] == -1.0


def test_linear_probe_separable_vs_random_features():
    rng = np.random.default_rng(0)
    pid = _pid(10, 30)
    y = rng.integers(0, 3, size=len(pid))
    informative = np.eye(3)[y] * 3 + 0.3 * rng.standard_normal((len(pid), 3))
    noise = rng.standard_normal((len(pid), 3))
    good = linear_probe(np.hstack([informative, noise]), y, pid, n_folds=5)
    bad = linear_probe(noise, y, pid, n_folds=5)
    assert good["macro_f1"]["mean"] > 0.95
    assert bad["macro_f1"]["mean"] < 0.5
    low = linear_probe(np.hstack([informative, noise]), y, pid, n_folds=5, label_subjects=1, draws=3)
    assert low["draws"] == 3 and len(low["per_draw"]) == 3 and low["macro_f1"]["mean"] > 0.9
