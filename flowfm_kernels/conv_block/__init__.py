"""The velocity network's conv block: Conv1d(k=3) + GroupNorm + FiLM + SiLU.

``conv_block(x, weight, bias, gamma, beta, scale, shift, num_groups, eps, backend=)``: x (B, Cin, L), weight
(Cout, Cin, 3), bias (Cout,) -> (B, Cout, L); the epilogue is :mod:`flowfm_kernels.gn_film_silu`'s op.

=========================================  ===================================================================
``reference.py``                           ``conv_block_ref``: ``F.conv1d`` then ``gn_film_silu_ref``
``triton.py``                              Triton implicit-GEMM conv with GN partial sums in its epilogue,
                                           ``flowfm::conv_block_fwd`` / ``conv1d_k3`` custom ops, ``conv_block_cost``
``cuda.py``                                ``conv_block_cuda``: ``F.conv1d`` (cuDNN) + the CUDA C++ GN epilogue
tests                                      ``tests/test_kernels_conv_block.py``, ``tests/test_cuda_gn_film_silu.py``,
                                           ``tests/test_dispatch.py``, ``tests/test_model_backends.py``
=========================================  ===================================================================
"""
from __future__ import annotations

from typing import Optional

import torch

from flowfm_kernels import dispatch
from flowfm_kernels.conv_block.reference import conv_block_ref

# cuda: torch's Conv1d (cuDNN) + the CUDA C++ GN+FiLM+SiLU epilogue. auto tries Triton first: its implicit GEMM
# computes the GN partial sums in the conv's epilogue, which saves one read of h (not yet timed against cuda).
dispatch.register("conv_block", {
    "eager": "flowfm_kernels.conv_block.reference:conv_block_ref",
    "triton": "flowfm_kernels.conv_block.triton:conv_block_triton",
    "cuda": "flowfm_kernels.conv_block.cuda:conv_block_cuda",
}, cuda_preference=("triton", "cuda", "eager"),
    notes={"cuda": "conv by torch F.conv1d (cuDNN), GN+FiLM+SiLU epilogue in CUDA C++"})


def conv_block(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
               scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
               eps: float = 1e-5, *, backend: Optional[str] = None) -> torch.Tensor:
    """Conv1d(k=3, padding 1) + GN + FiLM + SiLU; see :func:`conv_block_ref`. Differentiable."""
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[1] != x.shape[1] or weight.shape[2] != 3:
        raise ValueError(f"conv_block expects x (B, Cin, L) and weight (Cout, Cin, 3); got x {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)}")
    if weight.shape[0] % num_groups:
        raise ValueError(f"output channels ({weight.shape[0]}) must be divisible by num_groups ({num_groups})")
    fn = dispatch.implementation("conv_block", backend, x.device)
    return fn(x, weight, bias, gamma, beta, scale, shift, num_groups, eps)


__all__ = ["conv_block", "conv_block_ref"]
