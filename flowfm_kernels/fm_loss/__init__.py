"""Flow-matching loss and path interpolation (conditional OT / rectified flow).

``flow_matching_loss(v, x0, x1, sigma_min, reduction)`` = mean ``(v - (x1 - (1 - sigma_min) x0))^2`` (scalar, or
(B,) for ``"per_sample"``); ``interpolate(x0, x1, t, sigma_min)`` = ``(1 - (1 - sigma_min) t) x0 + t x1``, t (B,).

=========================================  ===================================================================
``reference.py``                           ``flow_matching_loss_ref``, ``interpolate_ref``, ``REDUCTIONS``
``triton.py``                              Triton kernels and custom ops, cost models ``*_cost``
``cuda.py``                                ``flow_matching_loss_cuda``, ``interpolate_cuda`` over ``csrc/fm_loss.cu``
tests                                      ``tests/test_kernels_fm_loss.py``, ``tests/test_cuda_fm_loss.py``,
                                           ``tests/test_dispatch.py``, ``tests/test_model_backends.py``
=========================================  ===================================================================
"""
from __future__ import annotations

from typing import Optional

import torch

from flowfm_kernels import dispatch
from flowfm_kernels.fm_loss.reference import REDUCTIONS, flow_matching_loss_ref, interpolate_ref

dispatch.register("flow_matching_loss", {
    "eager": "flowfm_kernels.fm_loss.reference:flow_matching_loss_ref",
    "triton": "flowfm_kernels.fm_loss.triton:flow_matching_loss_triton",
    "cuda": "flowfm_kernels.fm_loss.cuda:flow_matching_loss_cuda",
})
dispatch.register("interpolate", {
    "eager": "flowfm_kernels.fm_loss.reference:interpolate_ref",
    "triton": "flowfm_kernels.fm_loss.triton:interpolate_triton",
    "cuda": "flowfm_kernels.fm_loss.cuda:interpolate_cuda",
})


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 3 or any(s != first for s in shapes.values()):
        raise ValueError(f"expected tensors of one shape (B, C, L), got {shapes}")


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0, *,
                backend: Optional[str] = None) -> torch.Tensor:
    """x_t = (1 - (1 - sigma_min) t) x0 + t x1 with per-sample t (B,). Not differentiated (inputs are data)."""
    _check_same_shape(x0=x0, x1=x1)
    if t.shape != (x0.shape[0],):
        raise ValueError(f"t must have shape (B,) = ({x0.shape[0]},), got {tuple(t.shape)}")
    return dispatch.implementation("interpolate", backend, x0.device)(x0, x1, t, sigma_min)


def flow_matching_loss(v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = 0.0,
                       reduction: str = "mean", *, backend: Optional[str] = None) -> torch.Tensor:
    """mean (v - (x1 - (1 - sigma_min) x0))^2; differentiable in ``v``. See :mod:`.reference` for the maths."""
    _check_same_shape(v=v, x0=x0, x1=x1)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
    return dispatch.implementation("flow_matching_loss", backend, v.device)(v, x0, x1, sigma_min, reduction)


__all__ = ["flow_matching_loss", "interpolate", "flow_matching_loss_ref", "interpolate_ref"]
