"""Batched, in-place-capable ODE solver updates with per-sample step sizes and fused guidance.

``euler_step``, ``heun_correct``, ``rk4_combine``, ``guidance_combine`` on (B, C, L) states with dt (B,) and
``g(v, v_null) = v_null + w (v - v_null)``; ``out=x`` updates in place.

=========================================  ===================================================================
``reference.py``                           the four ``*_ref`` updates in eager PyTorch
``triton.py``                              Triton kernels, ``flowfm::*_triton`` custom ops (mutating ``out``),
                                           cost models ``euler_step_cost``, ``heun_correct_cost``
``cuda.py``                                the four ``*_cuda`` wrappers over ``csrc/ode_steps.cu``
tests                                      ``tests/test_kernels_ode_steps.py``, ``tests/test_cuda_ode_steps.py``,
                                           ``tests/test_graphs.py`` (CUDA-graph capture), ``tests/test_dispatch.py``
=========================================  ===================================================================
"""
from __future__ import annotations

from typing import Optional

import torch

from flowfm_kernels import dispatch
from flowfm_kernels.ode_steps.reference import (euler_step_ref, guidance_combine_ref, heun_correct_ref,
                                                rk4_combine_ref)

for _name in ("euler_step", "heun_correct", "rk4_combine", "guidance_combine"):
    dispatch.register(_name, {
        "eager": f"flowfm_kernels.ode_steps.reference:{_name}_ref",
        "triton": f"flowfm_kernels.ode_steps.triton:{_name}_triton",
        "cuda": f"flowfm_kernels.ode_steps.cuda:{_name}_cuda",
    })


def _check(x: torch.Tensor, dt: Optional[torch.Tensor], **others: Optional[torch.Tensor]) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (B, C, L), got {tuple(x.shape)}")
    for name, t in others.items():
        if t is not None and t.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(t.shape)}")
    if dt is not None and dt.shape != (x.shape[0],):
        raise ValueError(f"dt must have shape (B,) = ({x.shape[0]},), got {tuple(dt.shape)}")


def euler_step(x, v, dt, out=None, v_null=None, guidance: float = 1.0, *, backend: Optional[str] = None):
    """out = x + dt * (v_null + w (v - v_null)); ``out=x`` updates in place. Used for Euler, predictors, stages."""
    _check(x, dt, v=v, out=out, v_null=v_null)
    return dispatch.implementation("euler_step", backend, x.device)(x, v, dt, out, v_null, guidance)


def heun_correct(x, v1, v2, dt, out=None, v1_null=None, v2_null=None, guidance: float = 1.0, *,
                 backend: Optional[str] = None):
    """out = x + dt/2 (g(v1) + g(v2)): Heun's second stage."""
    _check(x, dt, v1=v1, v2=v2, out=out, v1_null=v1_null, v2_null=v2_null)
    return dispatch.implementation("heun_correct", backend, x.device)(x, v1, v2, dt, out, v1_null, v2_null,
                                                                      guidance)


def rk4_combine(x, k1, k2, k3, k4, dt, out=None, *, backend: Optional[str] = None):
    """out = x + dt/6 (k1 + 2 k2 + 2 k3 + k4) with guided stage velocities k_i."""
    _check(x, dt, k1=k1, k2=k2, k3=k3, k4=k4, out=out)
    return dispatch.implementation("rk4_combine", backend, x.device)(x, k1, k2, k3, k4, dt, out)


def guidance_combine(v, v_null, guidance: float, out=None, *, backend: Optional[str] = None):
    """out = v_null + w (v - v_null)."""
    _check(v, None, v_null=v_null, out=out)
    return dispatch.implementation("guidance_combine", backend, v.device)(v, v_null, guidance, out)


__all__ = ["euler_step", "heun_correct", "rk4_combine", "guidance_combine", "euler_step_ref", "heun_correct_ref",
           "rk4_combine_ref", "guidance_combine_ref"]
