"""``FlowFMFeaturizer``: FlowFM representations as a scikit-learn transformer, for pipelines and grouped CV.

    from sklearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    pipe = make_pipeline(FlowFMFeaturizer("small-hapt"), LogisticRegression(max_iter=1000))
    cross_val_score(pipe, X, y, groups=pid, cv=GroupKFold(5))     # X (N, C, L) windows in g

``fit(X)`` loads ``checkpoint`` (a model folder or a shipped name), or, with ``checkpoint=None``, pretrains a fresh
FlowFM of ``preset`` on X for ``epochs`` (inside cross-validation that is each training fold only: inductive).
``transform(X)`` returns z (N, D) float32, standardised with the mean / SD of the windows seen by ``fit`` when
``standardize`` (FlowFM's z is small in scale; see :meth:`flowfm.encoder.EmbedMixin.embed`).
"""
from __future__ import annotations

import tempfile
from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["FlowFMFeaturizer"]


class FlowFMFeaturizer(TransformerMixin, BaseEstimator):
    """Windows (N, C, L) in g -> FlowFM representations (N, D); see the module docstring."""

    def __init__(self, checkpoint: Optional[str] = None, preset: str = "tiny", epochs: int = 2,
                 batch_size: int = 64, standardize: bool = True, device: str = "cpu", seed: int = 0,
                 unit: Optional[str] = None):
        self.checkpoint = checkpoint
        self.preset = preset
        self.epochs = epochs
        self.batch_size = batch_size
        self.standardize = standardize
        self.device = device
        self.seed = seed
        self.unit = unit

    def _windows(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ValueError(f"FlowFMFeaturizer takes windows of shape (N, C, L) in g, got shape {X.shape}")
        return X

    def fit(self, X, y=None):
        import torch

        from flowfm.checkpoint import load_model

        X = self._windows(X)
        if self.checkpoint is not None:
            model = load_model(self.checkpoint, map_location=self.device)
        else:
            from flowfm.config import FlowFMConfig
            from flowfm.model import FlowFM
            from flowfm.training import TrainConfig, pretrain

            torch.manual_seed(self.seed)
            model = FlowFM(FlowFMConfig(preset=self.preset, in_channels=X.shape[1], window=X.shape[2]))
            model.fit_normalizer(X)
            cfg = TrainConfig(epochs=self.epochs, batch_size=min(self.batch_size, len(X)), seed=self.seed,
                              null_fit_steps=0, z_bank_size=0, keep_checkpoints=1)
            with tempfile.TemporaryDirectory(prefix="flowfm-featurizer-") as tmp:
                pretrain(model, X, cfg, tmp, progress=False, device=self.device)
            model.eval()
        self.model_ = model
        z = self._embed(X)
        self.mean_, self.scale_ = z.mean(0), z.std(0).clip(1e-8)
        self.n_features_out_ = z.shape[1]
        return self

    def _embed(self, X) -> np.ndarray:
        return self.model_.embed(X, batch_size=256, unit=self.unit).numpy()

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        z = self._embed(self._windows(X))
        return ((z - self.mean_) / self.scale_).astype(np.float32) if self.standardize else z

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "model_")
        return np.asarray([f"z{i}" for i in range(self.n_features_out_)], dtype=object)
