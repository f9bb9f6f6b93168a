"""Fixed-step ODE solvers for dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data), batched with per-sample times.

A *field* is a callable ``field(x, t) -> (v, v_null)`` with x (B, C, L), t (B,), v (B, C, L) and ``v_null`` either
None or the unconditional velocity for classifier-free guidance; the solvers fuse the guidance combine
``g = v_null + w (v - v_null)`` into the update kernels of :mod:`flowfm_kernels.ode_steps`.

With step h = t_{n+1} - t_n:

    euler     x += h g(x, t)                                                      NFE 1 per step
    midpoint  x += h g(x + h/2 g(x, t), t + h/2)                                  NFE 2 per step
    heun      x_p = x + h g(x, t);  x += h/2 (g(x, t) + g(x_p, t + h))           NFE 2 per step (every step,
              including the last: this implementation never skips the corrector)
    rk4       classical Runge-Kutta 4                                             NFE 4 per step

Global error orders: 1, 2, 2, 4, reached once h resolves the field's variation in t (docs/results.md "Solver order";
``bench/solver_order.py`` measures them on FlowFM's own network).

Precision: the state keeps x0's dtype. A float32 (or lower) state runs on the float32 grid through the
:mod:`flowfm_kernels.ode_steps` kernels (all arithmetic in float32, whatever the backend); a float64 state runs end to
end in float64: float64 grid and times t, and the updates through the steps' eager references, which compute in
float64 for float64 inputs (the fused kernels compute in float32).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

import flowfm_kernels
from flowfm.profiling import nvtx_range

Field = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
METHODS = tuple(NFE_PER_STEP)


def nfe(method: str, steps: int) -> int:
    """Number of velocity evaluations (each a batched network call; guidance doubles the batch, not the NFE)."""
    return NFE_PER_STEP[method] * steps


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a solver state of ``dtype`` is integrated in, and its time grid's: float64 stays float64, anything
    else is float32 (fp16 / bf16 models integrate a float32 state; :func:`flowfm.sampling.generate`)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def time_grid(steps: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform grid 0 = t_0 < ... < t_steps = 1, shape (steps + 1,), in ``dtype`` (float32 or float64)."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"time grids are float32 or float64, got {dtype}")
    return torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=dtype)


def _step(field: Field, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor, method: str, guidance: float,
          backend: Optional[str]) -> torch.Tensor:
    """One in-place update of x (B, C, L) from per-sample times t (B,) with per-sample steps h (B,)."""
    K = flowfm_kernels
    if x.dtype == torch.float64:  # the fused kernels compute in float32; the eager references keep float64
        backend = "eager"
    if method == "euler":
        v, vn = field(x, t)
        return K.euler_step(x, v, h, out=x, v_null=vn, guidance=guidance, backend=backend)
    if method == "midpoint":
        v, vn = field(x, t)
        x_mid = K.euler_step(x, v, h / 2, v_null=vn, guidance=guidance, backend=backend)
        v, vn = field(x_mid, t + h / 2)
        return K.euler_step(x, v, h, out=x, v_null=vn, guidance=guidance, backend=backend)
    if method == "heun":
        v1, vn1 = field(x, t)
        x_pred = K.euler_step(x, v1, h, v_null=vn1, guidance=guidance, backend=backend)
        v2, vn2 = field(x_pred, t + h)
        return K.heun_correct(x, v1, v2, h, out=x, v1_null=vn1, v2_null=vn2, guidance=guidance, backend=backend)
    if method == "rk4":
        def guided(xs, ts):
            v, vn = field(xs, ts)
            return v if vn is None else K.guidance_combine(v, vn, guidance, backend=backend)

        k1 = guided(x, t)
        k2 = guided(K.euler_step(x, k1, h / 2, backend=backend), t + h / 2)
        k3 = guided(K.euler_step(x, k2, h / 2, backend=backend), t + h / 2)
        k4 = guided(K.euler_step(x, k3, h, backend=backend), t + h)
        return K.rk4_combine(x, k1, k2, k3, k4, h, out=x, backend=backend)
    raise ValueError(f"method={method!r} is unknown; expected one of {METHODS}")


def integrate(field: Field, x0: torch.Tensor, steps: int, method: str = "heun", guidance: float = 1.0,
              grid: Optional[torch.Tensor] = None, backend: Optional[str] = None) -> torch.Tensor:
    """Integrate from x0 (B, C, L) at t = grid[0] to grid[-1] (default: ``steps`` uniform steps on [0, 1]).
    Returns a new tensor in x0's dtype; x0 is not modified. The grid, and the times t passed to ``field``, are in
    :func:`state_dtype` of x0 (float64 for a float64 x0, else float32)."""
    if method not in NFE_PER_STEP:
        raise ValueError(f"method={method!r} is unknown; expected one of {METHODS}")
    dtype = state_dtype(x0.dtype)
    grid = time_grid(steps, x0.device, dtype) if grid is None else grid.to(x0.device, dtype)
    x = x0.clone()
    ones = torch.ones(x.shape[0], device=x.device, dtype=dtype)
    for n in range(grid.numel() - 1):
        with nvtx_range("flowfm/solver_step"):
            t = ones * grid[n]
            _step(field, x, t, ones * (grid[n + 1] - grid[n]), method, guidance, backend)
    return x
