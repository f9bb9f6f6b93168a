"""Conv1d(k=3) + GroupNorm + FiLM + SiLU for ``backend="cuda"``: the conv through torch (``F.conv1d``: cuDNN on a
GPU, its own backward) and the epilogue through the CUDA C++ kernel of :mod:`flowfm_kernels.gn_film_silu.cuda`."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from flowfm_kernels.cuda.launch import check_device
from flowfm_kernels.gn_film_silu.cuda import gn_film_silu_cuda

__all__ = ["conv_block_cuda"]


def conv_block_cuda(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                    gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor], scale: Optional[torch.Tensor],
                    shift: Optional[torch.Tensor], num_groups: int, eps: float = 1e-5) -> torch.Tensor:
    """``SiLU(GN(conv1d(x, W, bias, padding=1)) * (1 + scale) + shift)``; see :func:`conv_block_ref`.

    x (B, Cin, L), weight (Cout, Cin, 3), bias (Cout,) or None -> h (B, Cout, L) by ``F.conv1d`` (cuDNN; its own
    backward gives dx, dW, dbias), then :func:`gn_film_silu_cuda` on h (CUDA C++ forward and backward)."""
    fn = "conv_block_cuda"
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[1] != x.shape[1] or weight.shape[2] != 3:
        raise ValueError(f"{fn}: expects x (B, Cin, L) and weight (Cout, Cin, 3); got x {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)}")
    check_device(fn, x.device, weight=weight, bias=bias)
    h = F.conv1d(x, weight, bias, padding=1)
    return gn_film_silu_cuda(h, gamma, beta, scale, shift, num_groups, eps)
