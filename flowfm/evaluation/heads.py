"""Classifier heads for the ``mlp`` / ``finetune`` modes, and class weights for the cross-entropy.

    MLPHead:            z (B, D) -> (z - mean) / std -> Linear(D, 256) -> ReLU -> Dropout -> Linear(256, K)
                        -> logits (B, K)
    EncoderClassifier:  windows (B, C, L) -> encoder -> z (B, D) -> head -> logits (B, K)

The head's input standardisation is a fixed buffer set by :meth:`MLPHead.fit_input` from the z of the **fit
windows only** (frozen features in ``mlp``; the initial encoder's z in ``finetune`` / ``scratch``), so features of
any scale (a random-init encoder's z has SDs around 1e-4) reach the MLP standardised, and no statistic ever comes
from validation or test windows. (A BatchNorm there would evaluate with running averages still far from such
scales after a few epochs' steps.)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MLPHead(nn.Module):
    """2-layer MLP classifier on representations: (B, D) -> logits (B, n_classes)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        if in_dim < 1 or n_classes < 2:
            raise ValueError(f"MLPHead needs in_dim >= 1 and n_classes >= 2, got {in_dim}, {n_classes}")
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_classes))

    @torch.no_grad()
    def fit_input(self, z_fit) -> "MLPHead":
        """Set the input standardisation from the fit windows' representations z_fit (N, D)."""
        z = torch.as_tensor(np.asarray(z_fit, dtype=np.float32))
        self.mean.copy_(z.mean(0))
        self.std.copy_(z.std(0, unbiased=False).clamp_min(1e-8) if len(z) > 1 else torch.ones_like(self.std))
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net((z - self.mean) / self.std)


class EncoderClassifier(nn.Module):
    """encoder + head, trained end to end (``finetune`` / ``scratch``): (B, C, L) -> logits (B, n_classes)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def reinitialize(module: nn.Module) -> nn.Module:
    """Reset every submodule that has ``reset_parameters`` (convs, linears, norms incl. running stats), in place:
    the same architecture at PyTorch's default random init (the global torch RNG is used: seed it first)."""
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
    return module


def class_weights(y_fit: np.ndarray, n_classes: int) -> torch.Tensor:
    """Balanced cross-entropy weights from the fit labels (ints in [0, n_classes)): w_c = N / (K_present * N_c)
    for the K_present classes present, 0 for absent classes (they never occur as a target)."""
    counts = np.bincount(np.asarray(y_fit, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)
