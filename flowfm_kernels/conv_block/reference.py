"""Eager reference of the whole conv block: Conv1d(k=3, zero 'same' padding) -> GN -> FiLM -> SiLU.

    h = conv1d(x, W, bias, padding=1)               x (B, Cin, L), W (Cout, Cin, 3) -> h (B, Cout, L)
    y = SiLU( GN(h; gamma, beta) * (1 + scale) + shift )   scale, shift (B, Cout)
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref


def conv_block_ref(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                   scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
                   eps: float = 1e-5) -> torch.Tensor:
    h = F.conv1d(x, weight, bias, padding=weight.shape[-1] // 2)
    return gn_film_silu_ref(h, gamma, beta, scale, shift, num_groups, eps)
