"""FlowFMFeaturizer inside scikit-learn: clone / get_params round trip, a Pipeline under GroupKFold, standardised
output equal to the standardised embeddings, and pretraining on the training folds when no checkpoint is given."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline

import flowfm
from flowfm.featurizer import FlowFMFeaturizer


@pytest.fixture(scope="module")
def windows():
    ds = flowfm.data.load_hapt().labelled()
    keep = np.isin(ds.pid, np.unique(ds.pid)[:6])
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(np.flatnonzero(keep), 180, replace=False))
    return np.asarray(ds.x[idx]), np.asarray(ds.y[idx]), np.asarray(ds.pid[idx])


def test_params_and_clone():
    f = FlowFMFeaturizer("small-hapt", standardize=False, batch_size=32)
    g = clone(f)
    assert g.get_params() == f.get_params() and g is not f
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        FlowFMFeaturizer("small-hapt").fit(np.zeros((4, 300)))


def test_pipeline_with_group_kfold(windows):
    x, y, pid = windows
    pipe = Pipeline([("feat", FlowFMFeaturizer("small-hapt")), ("clf", LogisticRegression(max_iter=2000))])
    scores = cross_val_score(pipe, x, y, groups=pid, cv=GroupKFold(3), scoring="f1_macro")
    assert scores.shape == (3,) and scores.mean() > 0.6  # 6 activities: chance is about 0.17
    feat = FlowFMFeaturizer("small-hapt").fit(x[:120])
    z = flowfm.pretrained("small-hapt").embed(x[120:]).numpy()
    ref = (z - feat.mean_) / feat.scale_
    np.testing.assert_allclose(feat.transform(x[120:]), ref, rtol=1e-4, atol=1e-4)
    assert feat.get_feature_names_out()[0] == "z0" and len(feat.get_feature_names_out()) == z.shape[1]


def test_pretrains_on_fit_data_without_checkpoint(windows):
    x, _, _ = windows
    feat = FlowFMFeaturizer(preset="tiny", epochs=1, batch_size=60).fit(x[:120])
    out = feat.transform(x[120:])
    assert out.shape == (60, feat.model_.z_dim) and np.isfinite(out).all()
    assert not feat.model_.training
