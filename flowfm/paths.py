"""Training-time sampling of t for the conditional-OT path (interpolation and loss live in
:mod:`flowfm_kernels.fm_loss`):

    uniform:       t ~ U(0, 1)
    logit_normal:  t = sigmoid(n), n ~ N(m, s^2)      (SD3-style; mass in the middle for m = 0)
"""
from __future__ import annotations

from typing import Optional

import torch

from flowfm import rng


def sample_t(batch: int, kind: str = "uniform", mean: float = 0.0, std: float = 1.0,
             generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """(batch,) float32 times in [0, 1]."""
    if kind == "uniform":
        return rng.rand(batch, generator, device=device)
    if kind == "logit_normal":
        return torch.sigmoid(mean + std * rng.randn(batch, generator, device=device))
    raise ValueError(f"t sampling {kind!r} is unknown; expected 'uniform' or 'logit_normal'")
