"""Eager PyTorch reference of the GN + FiLM + SiLU tail of the conv block.

    y[b, c, l] = SiLU( (xhat[b, c, l] * gamma[c] + beta[c]) * (1 + scale[b, c]) + shift[b, c] )
    xhat = (h - mean_{b,g}) / sqrt(var_{b,g} + eps),   statistics over the C/G channels of group g and all L.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def check_shapes(fn: str, h_shape: tuple, gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                 scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int) -> None:
    """The operand shapes every backend needs: h (B, C, L) with C divisible by num_groups, gamma / beta (C,) and
    scale / shift (B, C) where given. Raises ValueError naming ``fn``, the operand and the expected shape."""
    if len(h_shape) != 3:
        raise ValueError(f"{fn}: h must have shape (B, C, L), got {tuple(h_shape)}")
    B, C, L = h_shape
    if num_groups <= 0 or C % num_groups:
        raise ValueError(f"{fn}: channels ({C}) must be divisible by num_groups ({num_groups})")
    for name, t, shape in (("gamma", gamma, (C,)), ("beta", beta, (C,)), ("scale", scale, (B, C)),
                           ("shift", shift, (B, C))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{fn}: {name} must have shape {shape}, got {tuple(t.shape)}")


def gn_film_silu_ref(h: torch.Tensor, gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                     scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
                     eps: float = 1e-5) -> torch.Tensor:
    """h (B, C, L); gamma, beta (C,) or None; scale, shift (B, C) or None -> y (B, C, L), dtype of h.

    Computed in ``promote_types(h.dtype, float32)``: low-precision inputs in float32 and cast back, like the fused
    kernels; float64 stays float64 (a float64 model is exact end to end).
    """
    dtype = h.dtype
    cd = torch.promote_types(dtype, torch.float32)
    if gamma is None and beta is not None:  # F.group_norm's backward fails for (weight=None, bias=tensor)
        gamma = torch.ones_like(beta)
    y = F.group_norm(h.to(cd), num_groups, None if gamma is None else gamma.to(cd),
                     None if beta is None else beta.to(cd), eps)
    if scale is not None:
        y = y * (1 + scale.to(cd)[:, :, None])
    if shift is not None:
        y = y + shift.to(cd)[:, :, None]
    return F.silu(y).to(dtype)
