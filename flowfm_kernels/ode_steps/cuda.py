"""CUDA C++ ODE-step updates (``csrc/ode_steps.cu``) with the references' signatures.

Sampling-time ops: when an input requires grad (and grad mode is on) they run the eager reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from flowfm_kernels.cuda import loader
from flowfm_kernels.cuda.launch import (DTYPE_CODES, check_device, contig, device_guard, is_number, kernel_dtype,
                                        per_sample_f32, ptr, requires_grad, step_out, stream)
from flowfm_kernels.ode_steps.reference import (euler_step_ref, guidance_combine_ref, heun_correct_ref,
                                                rk4_combine_ref)

__all__ = ["euler_step_cuda", "heun_correct_cuda", "rk4_combine_cuda", "guidance_combine_cuda"]


def _step_shapes(fn: str, x: torch.Tensor, **others: Optional[torch.Tensor]) -> tuple[int, int, int]:
    if x.dim() != 3:
        raise ValueError(f"{fn}: x must be (B, C, L), got {tuple(x.shape)}")
    for name, t in others.items():
        if t is not None and t.shape != x.shape:
            raise ValueError(f"{fn}: {name} must have the shape of x {tuple(x.shape)}, got {tuple(t.shape)}")
    check_device(fn, x.device, **others)
    return tuple(x.shape)


def _finish(buffer: torch.Tensor, copy_to: Optional[torch.Tensor], out: Optional[torch.Tensor]) -> torch.Tensor:
    if copy_to is not None:
        copy_to.copy_(buffer)
    return buffer if out is None else out


def euler_step_cuda(x: torch.Tensor, v: torch.Tensor, dt: torch.Tensor, out: Optional[torch.Tensor] = None,
                    v_null: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    """``out = x + dt_b * g(v, v_null)``; ``out=x`` updates in place. x / out and the velocities may have different
    dtypes (e.g. an fp32 state and a bf16 network)."""
    fn = "euler_step_cuda"
    B, C, L = _step_shapes(fn, x, v=v, out=out, v_null=v_null)
    if (x.dtype not in DTYPE_CODES or kernel_dtype(v, v_null) is None or (out is not None and out.dtype != x.dtype)
            or x.numel() == 0 or not is_number(guidance) or requires_grad(x, v, v_null, dt)):
        return euler_step_ref(x, v, dt, out, v_null, guidance)
    dev = x.device
    dt32 = per_sample_f32(fn, "dt", dt, B, dev)
    xc, vc, vnc = x.contiguous(), v.contiguous(), contig(v_null)
    buf, copy_to = step_out(out, (B, C, L), x.dtype, dev)
    mod = loader.get_module()
    with device_guard(dev):
        mod.euler_step(xc.data_ptr(), vc.data_ptr(), ptr(vnc), dt32.data_ptr(), buf.data_ptr(), B, C * L,
                       float(guidance), DTYPE_CODES[x.dtype], DTYPE_CODES[v.dtype], stream(dev))
    return _finish(buf, copy_to, out)


def heun_correct_cuda(x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, dt: torch.Tensor,
                      out: Optional[torch.Tensor] = None, v1_null: Optional[torch.Tensor] = None,
                      v2_null: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    """``out = x + dt_b / 2 * (g(v1, v1_null) + g(v2, v2_null))`` (Heun's corrector)."""
    fn = "heun_correct_cuda"
    B, C, L = _step_shapes(fn, x, v1=v1, v2=v2, out=out, v1_null=v1_null, v2_null=v2_null)
    if (x.dtype not in DTYPE_CODES or kernel_dtype(v1, v2, v1_null, v2_null) is None
            or (out is not None and out.dtype != x.dtype) or x.numel() == 0 or not is_number(guidance)
            or requires_grad(x, v1, v2, v1_null, v2_null, dt)):
        return heun_correct_ref(x, v1, v2, dt, out, v1_null, v2_null, guidance)
    dev = x.device
    dt32 = per_sample_f32(fn, "dt", dt, B, dev)
    xc, v1c, v2c, n1, n2 = x.contiguous(), v1.contiguous(), v2.contiguous(), contig(v1_null), contig(v2_null)
    buf, copy_to = step_out(out, (B, C, L), x.dtype, dev)
    mod = loader.get_module()
    with device_guard(dev):
        mod.heun_correct(xc.data_ptr(), v1c.data_ptr(), v2c.data_ptr(), ptr(n1), ptr(n2), dt32.data_ptr(),
                         buf.data_ptr(), B, C * L, float(guidance), DTYPE_CODES[x.dtype], DTYPE_CODES[v1.dtype],
                         stream(dev))
    return _finish(buf, copy_to, out)


def rk4_combine_cuda(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor, k4: torch.Tensor,
                     dt: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = x + dt_b / 6 * (k1 + 2 k2 + 2 k3 + k4)``."""
    fn = "rk4_combine_cuda"
    B, C, L = _step_shapes(fn, x, k1=k1, k2=k2, k3=k3, k4=k4, out=out)
    if (x.dtype not in DTYPE_CODES or kernel_dtype(k1, k2, k3, k4) is None
            or (out is not None and out.dtype != x.dtype) or x.numel() == 0
            or requires_grad(x, k1, k2, k3, k4, dt)):
        return rk4_combine_ref(x, k1, k2, k3, k4, dt, out)
    dev = x.device
    dt32 = per_sample_f32(fn, "dt", dt, B, dev)
    xc, c1, c2, c3, c4 = x.contiguous(), k1.contiguous(), k2.contiguous(), k3.contiguous(), k4.contiguous()
    buf, copy_to = step_out(out, (B, C, L), x.dtype, dev)
    mod = loader.get_module()
    with device_guard(dev):
        mod.rk4_combine(xc.data_ptr(), c1.data_ptr(), c2.data_ptr(), c3.data_ptr(), c4.data_ptr(), dt32.data_ptr(),
                        buf.data_ptr(), B, C * L, DTYPE_CODES[x.dtype], DTYPE_CODES[k1.dtype], stream(dev))
    return _finish(buf, copy_to, out)


def guidance_combine_cuda(v: torch.Tensor, v_null: torch.Tensor, guidance: float,
                          out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = v_null + w (v - v_null)``, of v's dtype."""
    fn = "guidance_combine_cuda"
    shape = tuple(v.shape)
    if v_null.shape != v.shape or (out is not None and out.shape != v.shape):
        raise ValueError(f"{fn}: v_null and out must have the shape of v {shape}")
    check_device(fn, v.device, v_null=v_null, out=out)
    if (kernel_dtype(v, v_null) is None or (out is not None and out.dtype != v.dtype) or v.numel() == 0
            or not is_number(guidance) or requires_grad(v, v_null)):
        return guidance_combine_ref(v, v_null, guidance, out)
    dev = v.device
    vc, nc = v.contiguous(), v_null.contiguous()
    buf, copy_to = step_out(out, shape, v.dtype, dev)
    mod = loader.get_module()
    with device_guard(dev):
        mod.guidance_combine(vc.data_ptr(), nc.data_ptr(), buf.data_ptr(), v.numel(), float(guidance),
                             DTYPE_CODES[v.dtype], stream(dev))
    return _finish(buf, copy_to, out)
