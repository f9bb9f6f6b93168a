"""GroupNorm + FiLM + SiLU: the memory-bound tail of the velocity network's conv block."""
from __future__ import annotations

from typing import Optional

import torch

from flowfm_kernels import dispatch
from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref

dispatch.register("gn_film_silu", {
    "eager": "flowfm_kernels.gn_film_silu.reference:gn_film_silu_ref",
    "triton": "flowfm_kernels.gn_film_silu.triton:gn_film_silu_triton",
    "cuda": "flowfm_kernels.cuda.ops:gn_film_silu_cuda",
})


def gn_film_silu(h: torch.Tensor, gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                 scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
                 eps: float = 1e-5, *, backend: Optional[str] = None) -> torch.Tensor:
    """``SiLU(GN(h) * (1 + scale) + shift)``; see :func:`gn_film_silu_ref` for shapes. Differentiable."""
    if h.dim() != 3:
        raise ValueError(f"gn_film_silu expects h of shape (B, C, L), got {tuple(h.shape)}")
    if h.shape[1] % num_groups:
        raise ValueError(f"channels ({h.shape[1]}) must be divisible by num_groups ({num_groups})")
    fn = dispatch.implementation("gn_film_silu", backend, h.device)
    return fn(h, gamma, beta, scale, shift, num_groups, eps)


__all__ = ["gn_film_silu", "gn_film_silu_ref"]
