"""Eager reference of the batched ODE-solver updates (per-sample step size, guidance fused in).

Guidance combine, with w the guidance weight (w = 1: plain conditional velocity):

    g(v, v_null) = v_null + w (v - v_null)          (= v when v_null is None)

    euler / predictor / midpoint stage:  out = x + dt_b * g(v, v_null)
    heun corrector:                      out = x + dt_b / 2 * (g(v1, v1_null) + g(v2, v2_null))
    rk4 combination:                     out = x + dt_b / 6 * (k1 + 2 k2 + 2 k3 + k4)

x, v, ... are (B, C, L); dt is (B,). ``out`` may be ``x`` itself (in-place update); arithmetic in
``promote_types(x.dtype, float32)`` (float32 for low-precision states, float64 for float64 ones).
"""
from __future__ import annotations

from typing import Optional

import torch


def _cd(x: torch.Tensor) -> torch.dtype:
    """The compute dtype: float32, or float64 for float64 tensors."""
    return torch.promote_types(x.dtype, torch.float32)


def guided_ref(v: torch.Tensor, v_null: Optional[torch.Tensor], guidance: float) -> torch.Tensor:
    cd = _cd(v)
    if v_null is None:
        return v.to(cd)
    return v_null.to(cd) + guidance * (v.to(cd) - v_null.to(cd))


def _write(out: Optional[torch.Tensor], value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if out is None:
        return value.to(like.dtype)
    out.copy_(value)
    return out


def euler_step_ref(x: torch.Tensor, v: torch.Tensor, dt: torch.Tensor, out: Optional[torch.Tensor] = None,
                   v_null: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    value = x.to(_cd(x)) + dt.to(_cd(x)).reshape(-1, 1, 1) * guided_ref(v, v_null, guidance)
    return _write(out, value, x)


def heun_correct_ref(x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, dt: torch.Tensor,
                     out: Optional[torch.Tensor] = None, v1_null: Optional[torch.Tensor] = None,
                     v2_null: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    avg = 0.5 * (guided_ref(v1, v1_null, guidance) + guided_ref(v2, v2_null, guidance))
    return _write(out, x.to(_cd(x)) + dt.to(_cd(x)).reshape(-1, 1, 1) * avg, x)


def rk4_combine_ref(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor, k4: torch.Tensor,
                    dt: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    cd = _cd(x)
    k = k1.to(cd) + 2 * k2.to(cd) + 2 * k3.to(cd) + k4.to(cd)
    return _write(out, x.to(cd) + dt.to(cd).reshape(-1, 1, 1) / 6 * k, x)


def guidance_combine_ref(v: torch.Tensor, v_null: torch.Tensor, guidance: float,
                         out: Optional[torch.Tensor] = None) -> torch.Tensor:
    return _write(out, guided_ref(v, v_null, guidance), v)
