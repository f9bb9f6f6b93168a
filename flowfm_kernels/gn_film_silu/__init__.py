"""GroupNorm + FiLM + SiLU: the memory-bound tail of the velocity network's conv block.

``gn_film_silu(h, gamma, beta, scale, shift, num_groups, eps, backend=)`` = ``SiLU((GN(h) gamma + beta)(1 + scale)
+ shift)``, h (B, C, L), gamma / beta (C,), scale / shift (B, C); checks shapes, then the dispatcher picks a backend.

=========================================  ===================================================================
``reference.py``                           ``gn_film_silu_ref``: the eager PyTorch definition (autograd by torch)
                                           and ``check_shapes``, the operand-shape check of every backend
``triton.py``                              Triton forward / backward kernels, ``flowfm::gn_film_silu_fwd|bwd``
                                           custom ops, cost model ``gn_film_silu_cost``
``cuda.py``                                ``gn_film_silu_cuda``: host wrapper and autograd.Function over
                                           ``csrc/gn_film_silu.cu`` (launch plans in ``csrc/flowfm_api.h``)
tests                                      ``tests/test_kernels_gn_film_silu.py`` (Triton vs reference),
                                           ``tests/test_cuda_gn_film_silu.py`` (CUDA C++, emulated / GPU),
                                           ``tests/test_dispatch.py``, ``tests/test_model_backends.py``
=========================================  ===================================================================
"""
from __future__ import annotations

from typing import Optional

import torch

from flowfm_kernels import dispatch
from flowfm_kernels.gn_film_silu.reference import check_shapes, gn_film_silu_ref

dispatch.register("gn_film_silu", {
    "eager": "flowfm_kernels.gn_film_silu.reference:gn_film_silu_ref",
    "triton": "flowfm_kernels.gn_film_silu.triton:gn_film_silu_triton",
    "cuda": "flowfm_kernels.gn_film_silu.cuda:gn_film_silu_cuda",
})


def gn_film_silu(h: torch.Tensor, gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                 scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
                 eps: float = 1e-5, *, backend: Optional[str] = None) -> torch.Tensor:
    """``SiLU(GN(h) * (1 + scale) + shift)``; see :func:`gn_film_silu_ref` for shapes. Differentiable."""
    check_shapes("gn_film_silu", tuple(h.shape), gamma, beta, scale, shift, num_groups)
    fn = dispatch.implementation("gn_film_silu", backend, h.device)
    return fn(h, gamma, beta, scale, shift, num_groups, eps)


__all__ = ["gn_film_silu", "gn_film_silu_ref"]
