"""CUDA C++ GroupNorm + FiLM + SiLU (``csrc/gn_film_silu.cu``) with the signature of :func:`gn_film_silu_ref`.

Differentiable through :class:`_GnFilmSiluFunction`, whose backward is CUDA too: deterministic row / group
reductions, dgamma / dbeta over batch chunks then the chunks in order, no atomics.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from flowfm_kernels.cuda import loader
from flowfm_kernels.cuda.launch import (DTYPE_CODES, check_device, device_guard, f32, is_number, ptr, requires_grad,
                                        stream)
from flowfm_kernels.gn_film_silu.reference import check_shapes, gn_film_silu_ref

__all__ = ["gn_film_silu_cuda"]


def _gn_forward(h, gamma, beta, scale, shift, num_groups: int, eps: float):
    mod = loader.get_module()
    B, C, L = h.shape
    G = int(num_groups)
    hc = h.detach().contiguous()
    g32, b32, s32, sh32 = f32(gamma), f32(beta), f32(scale), f32(shift)
    y = torch.empty_like(hc)
    mean = torch.empty((B, G), dtype=torch.float32, device=h.device)
    rstd = torch.empty((B, G), dtype=torch.float32, device=h.device)
    with device_guard(h.device):
        ws_bytes = mod.gn_fwd_workspace_bytes(B, C, L, G)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=h.device) if ws_bytes else None
        mod.gn_film_silu_fwd(hc.data_ptr(), ptr(g32), ptr(b32), ptr(s32), ptr(sh32), y.data_ptr(),
                             mean.data_ptr(), rstd.data_ptr(), ptr(ws), ws_bytes, B, C, L, G, float(eps),
                             DTYPE_CODES[h.dtype], stream(h.device))
    return y, hc, (g32, b32, s32, sh32), mean, rstd


class _GnFilmSiluFunction(torch.autograd.Function):
    """Forward and backward in CUDA; the backward recomputes xhat / z from the saved input, mean and rstd."""

    @staticmethod
    def forward(ctx, h, gamma, beta, scale, shift, num_groups, eps):
        y, hc, params, mean, rstd = _gn_forward(h, gamma, beta, scale, shift, num_groups, eps)
        ctx.save_for_backward(hc, *params, mean, rstd)
        ctx.num_groups = int(num_groups)
        ctx.param_dtypes = tuple(None if t is None else t.dtype for t in (gamma, beta, scale, shift))
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        hc, g32, b32, s32, sh32, mean, rstd = ctx.saved_tensors
        need_h, need_gamma, need_beta, need_scale, need_shift = ctx.needs_input_grad[:5]
        mod = loader.get_module()
        B, C, L = hc.shape
        G = ctx.num_groups
        dev = hc.device
        dy = dy.to(hc.dtype).contiguous()
        dh = torch.empty_like(hc) if need_h else None
        dgamma = torch.empty(C, dtype=torch.float32, device=dev) if need_gamma else None
        dbeta = torch.empty(C, dtype=torch.float32, device=dev) if need_beta else None
        dscale = torch.empty((B, C), dtype=torch.float32, device=dev) if need_scale else None
        dshift = torch.empty((B, C), dtype=torch.float32, device=dev) if need_shift else None
        with device_guard(dev):
            ws_bytes = mod.gn_bwd_workspace_bytes(B, C)
            ws = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
            mod.gn_film_silu_bwd(dy.data_ptr(), hc.data_ptr(), ptr(g32), ptr(b32), ptr(s32), ptr(sh32),
                                 mean.data_ptr(), rstd.data_ptr(), ptr(dh), ptr(dgamma), ptr(dbeta), ptr(dscale),
                                 ptr(dshift), ws.data_ptr(), ws_bytes, B, C, L, G, DTYPE_CODES[hc.dtype],
                                 stream(dev))
        grads = [dgamma, dbeta, dscale, dshift]
        grads = [None if g is None else g.to(dt) for g, dt in zip(grads, ctx.param_dtypes)]
        return (dh, *grads, None, None)


def gn_film_silu_cuda(h: torch.Tensor, gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                      scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
                      eps: float = 1e-5) -> torch.Tensor:
    """``SiLU((GN(h) * gamma + beta) * (1 + scale) + shift)``: see :func:`gn_film_silu_ref`. Differentiable in all
    tensor inputs; gamma / beta / scale / shift are read as float32 (copied when they are not)."""
    fn = "gn_film_silu_cuda"
    check_shapes(fn, tuple(h.shape), gamma, beta, scale, shift, num_groups)
    check_device(fn, h.device, gamma=gamma, beta=beta, scale=scale, shift=shift)
    params_ok = all(t is None or t.is_floating_point() for t in (gamma, beta, scale, shift))
    if h.dtype not in DTYPE_CODES or h.numel() == 0 or not params_ok or not is_number(eps):
        return gn_film_silu_ref(h, gamma, beta, scale, shift, num_groups, eps)
    if requires_grad(h, gamma, beta, scale, shift):
        return _GnFilmSiluFunction.apply(h, gamma, beta, scale, shift, int(num_groups), float(eps))
    return _gn_forward(h, gamma, beta, scale, shift, int(num_groups), float(eps))[0]
