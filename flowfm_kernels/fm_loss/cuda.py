"""CUDA C++ flow-matching loss and interpolation (``csrc/fm_loss.cu``) with the references' signatures.

The loss is differentiable: its forward writes dL/dv in the same pass and the backward scales it. The
interpolation is a sampling/training-input op: when an input requires grad it runs the eager reference.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from flowfm_kernels.cuda import loader
from flowfm_kernels.cuda.launch import (DTYPE_CODES, check_device, check_same_shape, device_guard, is_number,
                                        kernel_dtype, per_sample_f32, ptr, requires_grad, stream)
from flowfm_kernels.fm_loss.reference import REDUCTIONS, flow_matching_loss_ref, interpolate_ref

_REDUCTION_CODES = {"mean": 0, "per_sample": 1}

__all__ = ["flow_matching_loss_cuda", "interpolate_cuda"]


def _fm_loss_forward(v, x0, x1, sigma_min: float, reduction: str, want_grad: bool):
    mod = loader.get_module()
    B, C, L = v.shape
    N = C * L
    vc, x0c, x1c = v.detach().contiguous(), x0.detach().contiguous(), x1.detach().contiguous()
    dev = v.device
    loss = torch.empty(() if reduction == "mean" else (B,), dtype=torch.float32, device=dev)
    grad = torch.empty((B, C, L), dtype=torch.float32, device=dev) if want_grad else None
    with device_guard(dev):
        ws_bytes = mod.fm_loss_workspace_bytes(B, N)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
        mod.fm_loss_fwd(vc.data_ptr(), x0c.data_ptr(), x1c.data_ptr(), ptr(grad), loss.data_ptr(), ws.data_ptr(),
                        ws_bytes, B, N, float(sigma_min), _REDUCTION_CODES[reduction], DTYPE_CODES[v.dtype],
                        DTYPE_CODES[x0.dtype], stream(dev))
    return loss, grad


class _FlowMatchingLossFunction(torch.autograd.Function):
    """The forward writes dL/dv (float32, for an upstream gradient of 1) in the same pass as the loss; the
    backward scales it by the upstream gradient (and gives -dL/dv to x1, (1 - s) dL/dv to x0 when they need it)."""

    @staticmethod
    def forward(ctx, v, x0, x1, sigma_min, reduction):
        loss, grad = _fm_loss_forward(v, x0, x1, sigma_min, reduction, want_grad=True)
        ctx.save_for_backward(grad)
        ctx.sigma_min = sigma_min
        ctx.per_sample = reduction == "per_sample"
        ctx.dtypes = (v.dtype, x0.dtype, x1.dtype)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        g = grad * (grad_out.reshape(-1, 1, 1) if ctx.per_sample else grad_out)
        need_v, need_x0, need_x1 = ctx.needs_input_grad[:3]
        dv = g.to(ctx.dtypes[0]) if need_v else None
        dx0 = ((1.0 - ctx.sigma_min) * g).to(ctx.dtypes[1]) if need_x0 else None
        dx1 = (-g).to(ctx.dtypes[2]) if need_x1 else None
        return dv, dx0, dx1, None, None


def flow_matching_loss_cuda(v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = 0.0,
                            reduction: str = "mean") -> torch.Tensor:
    """``mean (v - (x1 - (1 - sigma_min) x0))^2`` (float32 scalar, or (B,) for ``"per_sample"``) in one pass over
    (v, x0, x1), with a deterministic two-stage reduction. Differentiable; see :func:`flow_matching_loss_ref`."""
    fn = "flow_matching_loss_cuda"
    check_same_shape(fn, v=v, x0=x0, x1=x1)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction={reduction!r}; expected one of {REDUCTIONS}")
    check_device(fn, v.device, x0=x0, x1=x1)
    if (v.dtype not in DTYPE_CODES or kernel_dtype(x0, x1) is None or v.numel() == 0
            or not is_number(sigma_min)):
        return flow_matching_loss_ref(v, x0, x1, sigma_min, reduction)
    if requires_grad(v, x0, x1):
        return _FlowMatchingLossFunction.apply(v, x0, x1, float(sigma_min), reduction)
    return _fm_loss_forward(v, x0, x1, float(sigma_min), reduction, want_grad=False)[0]


def interpolate_cuda(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` with per-sample t (B,); the result has x1's dtype."""
    fn = "interpolate_cuda"
    B, C, L = check_same_shape(fn, x0=x0, x1=x1)
    check_device(fn, x1.device, x0=x0)
    if (kernel_dtype(x0, x1) is None or x1.numel() == 0 or not is_number(sigma_min)
            or requires_grad(x0, x1, t)):
        return interpolate_ref(x0, x1, t, sigma_min)
    dev = x1.device
    t32 = per_sample_f32(fn, "t", t, B, dev)
    x0c, x1c = x0.contiguous(), x1.contiguous()
    out = torch.empty((B, C, L), dtype=x1.dtype, device=dev)
    mod = loader.get_module()
    with device_guard(dev):
        mod.interpolate(x0c.data_ptr(), x1c.data_ptr(), t32.data_ptr(), out.data_ptr(), B, C * L, float(sigma_min),
                        DTYPE_CODES[x1.dtype], stream(dev))
    return out
