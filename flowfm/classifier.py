"""A saved activity classifier: a pretrained encoder + a head, with its label names and preprocessing contract.

    clf = train_classifier(model, x, y, pid, mode="finetune")     # x (N, C, L) in g at model.data_spec's rate
    clf.save("clf/");  clf = ActivityClassifier.load("clf/")
    proba = clf.predict_proba(x_new)                              # (N, K), rows sum to 1
    names = clf.predict(x_new)                                    # (N,) label names

Modes (as in the evaluation protocol, design §5):

    linear    z = E(x) frozen, standardised with the training windows' mean / std, then a class-balanced logistic
              regression (scikit-learn), stored as a Linear layer: logits = W (z - mu) / sigma + b
    mlp       z frozen -> :class:`~flowfm.evaluation.heads.MLPHead`, early stopping on validation subjects
    finetune  encoder + MLPHead, every weight trained (the encoder at 0.1x the head's rate), early stopping

Validation subjects (``val_fraction`` of the labelled subjects, at least one, when there are >= 3) are held out
for early stopping; with fewer the head trains a fixed ``max_epochs``.

A classifier folder holds ``classifier.safetensors`` (encoder + head weights) and ``classifier.json`` (mode, label
names, the :class:`~flowfm.data.window_spec.WindowSpec` the windows must follow, the encoder's shape, training
provenance), and a SHA-256 over both, checked on load: neither file can be edited or swapped unnoticed. Nothing is
unpickled.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from flowfm.data.atomic import atomic_dir
from flowfm.data.digest import sha256_file
from flowfm.data.window_spec import WindowSpec
from flowfm.encoder import ResNetEncoder
from flowfm.evaluation.heads import MLPHead

FORMAT, VERSION = "flowfm-classifier", 1
WEIGHTS, CONFIG = "classifier.safetensors", "classifier.json"
MODES = ("linear", "mlp", "finetune")

__all__ = ["ActivityClassifier", "LinearHead", "train_classifier", "ClassifierError", "MODES"]


class ClassifierError(ValueError):
    """A classifier folder is missing, incomplete, tampered with or of an unknown format."""


class LinearHead(nn.Module):
    """(B, D) -> (z - mean) / std -> Linear(D, K) -> logits (B, K)."""

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear((z - self.mean) / self.std)


def _head(kind: str, in_dim: int, n_classes: int, hidden: int = 256) -> nn.Module:
    return LinearHead(in_dim, n_classes) if kind == "linear" else MLPHead(in_dim, n_classes, hidden)


def _digest(weights: Path, doc: dict) -> str:
    """SHA-256 of the weights file's bytes followed by the canonical JSON of ``doc`` (without the digest)."""
    h = hashlib.sha256()
    sha256_file(weights, h)
    body = {k: v for k, v in doc.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


class ActivityClassifier(nn.Module):
    """windows (B, C, L) in g -> encoder -> z (B, D) -> head -> logits (B, K); ``label_names[k]`` names class k."""

    def __init__(self, encoder: ResNetEncoder, head: nn.Module, label_names: Sequence[str], data_spec: WindowSpec,
                 mode: str, encoder_shape: dict, metadata: Optional[dict] = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; expected one of {MODES}")
        self.encoder, self.head = encoder, head
        self.label_names = [str(n) for n in label_names]
        self.data_spec, self.mode, self.encoder_shape = data_spec, mode, dict(encoder_shape)
        self.metadata = dict(metadata or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    @torch.no_grad()
    def predict_proba(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, K) of windows x (N, C, L) in g at ``data_spec``'s rate and length (eval mode,
        batch-independent; the previous train/eval mode is restored)."""
        x = np.asarray(x, dtype=np.float32)
        c, length = len(self.data_spec.channels), self.data_spec.window_length
        if x.ndim != 3 or x.shape[1] != c:
            raise ValueError(f"windows must have shape (N, {c}, L) in g, got {x.shape}")
        if x.shape[2] != length:
            raise ValueError(f"windows have {x.shape[2]} samples; this classifier takes {length} "
                             f"({self.data_spec.window_seconds:g} s at {self.data_spec.sample_rate_hz:g} Hz): "
                             "resample them first (flowfm predict does)")
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            out = [torch.softmax(self(torch.tensor(x[i:i + batch_size], device=device)), dim=1).cpu().numpy()
                   for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Predicted label names (N,) of windows x (N, C, L)."""
        return np.asarray(self.label_names)[self.predict_proba(x, batch_size).argmax(axis=1)]

    def save(self, path: Union[str, Path]) -> Path:
        """Write the classifier folder atomically (weights + JSON, one SHA-256 over both); an existing classifier
        folder is replaced, a folder holding anything else refused (FileExistsError)."""
        path = Path(path)
        with atomic_dir(path, replaces=(WEIGHTS, CONFIG)) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS))
            doc = {"format": FORMAT, "version": VERSION, "mode": self.mode, "label_names": self.label_names,
                   "data": self.data_spec.to_dict(), "encoder": self.encoder_shape,
                   "head": {"kind": "linear" if isinstance(self.head, LinearHead) else "mlp",
                            "in_dim": int(self.encoder.out_dim),
                            "hidden": int(self.head.net[0].out_features) if isinstance(self.head, MLPHead) else 0},
                   "metadata": self.metadata}
            doc["sha256"] = _digest(tmp / WEIGHTS, doc)
            (tmp / CONFIG).write_text(json.dumps(doc, indent=2))
        return path

    @classmethod
    def load(cls, path: Union[str, Path], map_location: str = "cpu") -> "ActivityClassifier":
        """Rebuild a classifier written by :meth:`save` (eval mode); ClassifierError if anything does not check."""
        path = Path(path)
        if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
            raise ClassifierError(f"{path} is not a classifier folder (expected {CONFIG} and {WEIGHTS}; make one "
                                  "with flowfm finetune)")
        try:
            doc = json.loads((path / CONFIG).read_text())
        except json.JSONDecodeError as exc:
            raise ClassifierError(f"{path / CONFIG} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ClassifierError(f"{path / CONFIG} is not a {FORMAT} v{VERSION} file")
        if doc.get("sha256") != _digest(path / WEIGHTS, doc):
            raise ClassifierError(f"{path}: {WEIGHTS} or {CONFIG} does not match the recorded SHA-256 (modified, "
                                  "truncated or swapped)")
        try:
            spec = WindowSpec.from_dict(doc["data"], int(doc["encoder"]["in_channels"]),
                                        int(doc["data"]["window_length"]))
            encoder = ResNetEncoder(int(doc["encoder"]["in_channels"]), float(doc["encoder"]["width"]))
            head = _head(doc["head"]["kind"], int(doc["head"]["in_dim"]), len(doc["label_names"]),
                         int(doc["head"]["hidden"]))
            model = cls(encoder, head, doc["label_names"], spec, doc["mode"], doc["encoder"], doc.get("metadata"))
            model.load_state_dict(load_file(str(path / WEIGHTS), device=str(map_location)))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ClassifierError(f"{path / CONFIG} does not describe the stored weights: {exc}") from None
        return model.to(map_location).eval()


def _validation_subjects(pid: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    subjects = np.unique(pid)
    if len(subjects) < 3 or val_fraction <= 0:
        return subjects[:0]
    k = max(1, int(round(val_fraction * len(subjects))))
    return np.random.default_rng(seed).choice(subjects, size=k, replace=False)


def train_classifier(model, x: np.ndarray, y: np.ndarray, pid: np.ndarray, mode: str = "finetune", *,
                     seed: int = 0, max_epochs: int = 30, patience: int = 5, batch_size: int = 128,
                     val_fraction: float = 0.2, device: str = "cpu", metadata: Optional[dict] = None,
                     progress=None) -> ActivityClassifier:
    """Train a classifier on labelled windows x (N, C, L) in g at ``model.data_spec``'s rate, labels y (N,) (str
    or int; ``""`` / -1 = unlabelled windows are dropped), subjects pid (N,). ``model`` is any FlowFM model (its
    ``encoder`` is copied, never changed). Returns the classifier in eval mode."""
    from flowfm.evaluation import fit as _fit
    from flowfm.evaluation.fit import FitConfig

    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {MODES}")
    y = np.asarray(y)
    keep = (y != "") if y.dtype.kind in "US" else (y.astype(np.int64) >= 0)
    x, y, pid = np.asarray(x, dtype=np.float32)[keep], y[keep].astype(str), np.asarray(pid)[keep].astype(str)
    names, y_int = np.unique(y, return_inverse=True)
    if len(names) < 2:
        raise ValueError(f"a classifier needs at least 2 classes among the labelled windows, got {len(names)} "
                         f"({', '.join(map(str, names)) or 'none'})")
    encoder = copy.deepcopy(model.encoder).to(device).float()
    val_subj = _validation_subjects(pid, val_fraction, seed)
    val = np.isin(pid, val_subj)
    fit_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    config = FitConfig(max_epochs=max_epochs, patience=patience, batch_size=batch_size, val_fraction=val_fraction)
    say = progress or (lambda *_: None)
    say(f"training a {mode} classifier on {len(fit_idx)} windows of {len(np.unique(pid[fit_idx]))} subjects "
        f"({len(val_idx)} validation windows of {len(val_subj)} subjects), {len(names)} classes")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if mode == "finetune":
            _fit.recalibrate_batchnorm(encoder, x[fit_idx], batch_size)
        encoder.eval()
        with torch.no_grad():
            z = np.concatenate([encoder(torch.from_numpy(x[i:i + 512]).to(device)).cpu().numpy()
                                for i in range(0, len(x), 512)])
        if mode == "linear":
            from sklearn.linear_model import LogisticRegression

            mean, std = z[fit_idx].mean(0), z[fit_idx].std(0).clip(1e-8)
            lr = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
            lr.fit((z[fit_idx] - mean) / std, y_int[fit_idx])
            head = LinearHead(z.shape[1], len(names))
            w, b = lr.coef_, lr.intercept_
            if len(names) == 2:  # sklearn's binary model: one logit s; softmax([0, s]) gives the same p
                w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
            with torch.no_grad():
                head.mean.copy_(torch.from_numpy(mean)), head.std.copy_(torch.from_numpy(std))
                head.linear.weight.copy_(torch.from_numpy(w)), head.linear.bias.copy_(torch.from_numpy(b))
            net = nn.Sequential(encoder, head.to(device))
            epochs = None
        else:
            head = MLPHead(z.shape[1], len(names), config.hidden, config.dropout).fit_input(z[fit_idx]).to(device)
            generator = torch.Generator().manual_seed(seed)
            if mode == "mlp":
                groups = [{"params": head.parameters(), "lr": config.lr}]
                result = _fit.fit_classifier(head, groups, z[fit_idx], y_int[fit_idx], z[val_idx], y_int[val_idx],
                                             len(names), config, generator)
            else:
                net = nn.Sequential(encoder, head)
                groups = [{"params": encoder.parameters(), "lr": config.lr * config.encoder_lr_scale},
                          {"params": head.parameters(), "lr": config.lr}]
                result = _fit.fit_classifier(net, groups, x[fit_idx], y_int[fit_idx], x[val_idx], y_int[val_idx],
                                             len(names), config, generator)
            epochs = {"epochs": result.epochs, "best_epoch": result.best_epoch, "best_val_f1": result.best_val_f1}
            say(f"  {result.epochs} epochs, kept epoch {result.best_epoch}"
                + (f" (validation macro-F1 {result.best_val_f1:.3f})" if result.best_val_f1 is not None else ""))
    shape = {"in_channels": int(model.config.in_channels), "width": float(model.config.encoder_width)}
    meta = {"trained_on_windows": int(len(fit_idx)), "validation_subjects": sorted(val_subj.tolist()),
            "seed": seed, "fit": epochs, **(metadata or {})}
    return ActivityClassifier(encoder.cpu(), head.cpu(), names.tolist(), model.data_spec, mode, shape, meta).eval()
