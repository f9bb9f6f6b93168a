"""Eager reference of the conditional-OT flow-matching interpolation and loss.

Path (rectified flow with minimum noise ``s = sigma_min``), per sample b with time t_b in [0, 1]:

    x_t = (1 - (1 - s) t) x0 + t x1                  (B, C, L)
    u   = d x_t / dt = x1 - (1 - s) x0               (independent of t)
    L   = mean_{b,c,l} (v - u)^2                     scalar ("mean")  or  mean over (c, l) per sample ("per_sample")
    dL/dv = 2 (v - u) / N                            N = B*C*L for "mean"
"""
from __future__ import annotations

import torch

REDUCTIONS = ("mean", "per_sample")


def interpolate_ref(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """x0, x1 (B, C, L); t (B,) -> x_t (B, C, L), dtype of x1, computed in float32."""
    tt = t.float().reshape(-1, 1, 1)
    xt = (1 - (1 - sigma_min) * tt) * x0.float() + tt * x1.float()
    return xt.to(x1.dtype)


def flow_matching_loss_ref(v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = 0.0,
                           reduction: str = "mean") -> torch.Tensor:
    """v, x0, x1 (B, C, L) -> float32 scalar (``"mean"``) or (B,) (``"per_sample"``)."""
    u = x1.float() - (1 - sigma_min) * x0.float()
    sq = (v.float() - u) ** 2
    if reduction == "mean":
        return sq.mean()
    if reduction == "per_sample":
        return sq.flatten(1).mean(1)
    raise ValueError(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
