"""CUDA C++ implementations of the FlowFM kernels, with exactly the signatures of the eager references.

The dispatcher (:mod:`flowfm_kernels.dispatch`) calls these by name for CUDA tensors under ``backend="cuda"`` (or
``auto``). Each function checks devices, dtypes and shapes, makes its inputs contiguous (a copy only when a tensor
is not), allocates outputs and workspaces with torch, and passes ``data_ptr()``s and the current stream of the
tensors' device to the kernels module from :func:`flowfm_kernels.cuda.loader.get_module` (the compiled
``flowfm_kernels._C`` or its CuPy/NVRTC JIT twin; the same calls either way).

Storage dtypes float32, float16 and bfloat16 run in the kernels (fp32 arithmetic inside). Anything else — float64,
mixed dtypes inside one group of inputs that the kernels take as one type, a tensor-valued guidance / sigma_min,
empty tensors, or an ``out`` of another dtype than the result — runs the eager reference instead, so results never
silently lose precision.

The conv block (:func:`conv_block_cuda`) runs its Conv1d(k=3) through torch (``F.conv1d``: cuDNN on a GPU) and its
GroupNorm + FiLM + SiLU epilogue through the CUDA C++ kernel, so ``backend="cuda"`` covers every op of the model.

Autograd: :func:`gn_film_silu_cuda`, :func:`conv_block_cuda` and :func:`flow_matching_loss_cuda` are differentiable
through ``torch.autograd.Function``s whose backward passes are CUDA kernels too (GN: deterministic row/group
reductions, dgamma / dbeta over batch chunks then the chunks in order, no atomics; loss: dL/dv is written by the
forward pass and scaled by the upstream gradient; the conv's own backward is torch's). The interpolation and the
ODE steps are sampling-time ops: when an input requires grad (and grad mode is on) they run the eager reference,
which autograd can differentiate.
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from flowfm_kernels.cuda import loader
from flowfm_kernels.fm_loss.reference import REDUCTIONS, flow_matching_loss_ref, interpolate_ref
from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref
from flowfm_kernels.ode_steps.reference import (euler_step_ref, guidance_combine_ref, heun_correct_ref,
                                                rk4_combine_ref)

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_REDUCTION_CODES = {"mean": 0, "per_sample": 1}

__all__ = ["gn_film_silu_cuda", "conv_block_cuda", "flow_matching_loss_cuda", "interpolate_cuda", "euler_step_cuda",
           "heun_correct_cuda", "rk4_combine_cuda", "guidance_combine_cuda", "DTYPE_CODES"]


# Tests only (tests/test_cuda_backend.py): lets CPU tensors through to a CPU emulation of the kernels module.
_ALLOW_CPU_TENSORS = False


# ------------------------------------------------------------------------------------------------ helpers
def _ptr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def _stream(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # only with _ALLOW_CPU_TENSORS (emulation)
    return torch.cuda.current_stream(device).cuda_stream


def _device_guard(device: torch.device):
    """Makes ``device`` current for the launch (the kernels run on the calling thread's current device)."""
    if device.type != "cuda" or device.index is None or device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def _check_device(fn: str, device: torch.device, **tensors: Optional[torch.Tensor]) -> None:
    if device.type != "cuda" and not (_ALLOW_CPU_TENSORS and device.type == "cpu"):
        raise ValueError(f"{fn}: the cuda backend needs CUDA tensors, got a tensor on {device}")
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{fn}: {name} is on {t.device} but the other inputs are on {device}")


def _check_same_shape(fn: str, **tensors: Optional[torch.Tensor]) -> tuple[int, ...]:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    first = next(iter(shapes.values()))
    if len(first) != 3 or any(s != first for s in shapes.values()):
        raise ValueError(f"{fn}: expected tensors of one shape (B, C, L), got {shapes}")
    return first


def _kernel_dtype(*tensors: Optional[torch.Tensor]) -> Optional[torch.dtype]:
    """The common kernel dtype of ``tensors`` (Nones ignored), or None if they differ or are unsupported."""
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    return dtype if dtype in DTYPE_CODES else None


def _requires_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _contig(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.contiguous()


def _f32(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().to(dtype=torch.float32).contiguous()


def _per_sample_f32(fn: str, name: str, t: torch.Tensor, B: int, device: torch.device) -> torch.Tensor:
    """A (B,) float32 contiguous copy of a per-sample tensor (a single value is broadcast)."""
    t = t.detach().to(device=device, dtype=torch.float32).reshape(-1)
    if t.numel() == 1 and B != 1:
        t = t.expand(B)
    if t.numel() != B:
        raise ValueError(f"{fn}: {name} must have shape (B,) = ({B},), got {t.numel()} values")
    return t.contiguous()


def _is_number(x) -> bool:
    """A Python / NumPy real number (a tensor-valued argument runs the eager reference)."""
    return isinstance(x, numbers.Real)


def _step_out(out: Optional[torch.Tensor], shape, dtype: torch.dtype, device: torch.device):
    """(buffer the kernel writes, tensor to copy it into afterwards or None)."""
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device), None
    if out.is_contiguous():
        return out, None
    return torch.empty(shape, dtype=dtype, device=device), out


# ------------------------------------------------------------------------------------------------ GN + FiLM + SiLU
def _gn_forward(h, gamma, beta, scale, shift, num_groups: int, eps: float):
    mod = loader.get_module()
    B, C, L = h.shape
    G = int(num_groups)
    hc = h.detach().contiguous()
    g32, b32, s32, sh32 = _f32(gamma), _f32(beta), _f32(scale), _f32(shift)
    y = torch.empty_like(hc)
    mean = torch.empty((B, G), dtype=torch.float32, device=h.device)
    rstd = torch.empty((B, G), dtype=torch.float32, device=h.device)
    with _device_guard(h.device):
        ws_bytes = mod.gn_fwd_workspace_bytes(B, C, L, G)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=h.device) if ws_bytes else None
        mod.gn_film_silu_fwd(hc.data_ptr(), _ptr(g32), _ptr(b32), _ptr(s32), _ptr(sh32), y.data_ptr(),
                             mean.data_ptr(), rstd.data_ptr(), _ptr(ws), ws_bytes, B, C, L, G, float(eps),
                             DTYPE_CODES[h.dtype], _stream(h.device))
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
        with _device_guard(dev):
            ws_bytes = mod.gn_bwd_workspace_bytes(B, C)
            ws = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
            mod.gn_film_silu_bwd(dy.data_ptr(), hc.data_ptr(), _ptr(g32), _ptr(b32), _ptr(s32), _ptr(sh32),
                                 mean.data_ptr(), rstd.data_ptr(), _ptr(dh), _ptr(dgamma), _ptr(dbeta), _ptr(dscale),
                                 _ptr(dshift), ws.data_ptr(), ws_bytes, B, C, L, G, DTYPE_CODES[hc.dtype],
                                 _stream(dev))
        grads = [dgamma, dbeta, dscale, dshift]
        grads = [None if g is None else g.to(dt) for g, dt in zip(grads, ctx.param_dtypes)]
        return (dh, *grads, None, None)


def gn_film_silu_cuda(h: torch.Tensor, gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                      scale: Optional[torch.Tensor], shift: Optional[torch.Tensor], num_groups: int,
                      eps: float = 1e-5) -> torch.Tensor:
    """``SiLU((GN(h) * gamma + beta) * (1 + scale) + shift)``: see :func:`gn_film_silu_ref`. Differentiable in all
    tensor inputs; gamma / beta / scale / shift are read as float32 (copied when they are not)."""
    fn = "gn_film_silu_cuda"
    if h.dim() != 3:
        raise ValueError(f"{fn}: h must be (B, C, L), got {tuple(h.shape)}")
    B, C, L = h.shape
    if num_groups <= 0 or C % num_groups:
        raise ValueError(f"{fn}: channels ({C}) must be divisible by num_groups ({num_groups})")
    _check_device(fn, h.device, gamma=gamma, beta=beta, scale=scale, shift=shift)
    for name, t, shape in (("gamma", gamma, (C,)), ("beta", beta, (C,)), ("scale", scale, (B, C)),
                           ("shift", shift, (B, C))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{fn}: {name} must have shape {shape}, got {tuple(t.shape)}")
    params_ok = all(t is None or t.is_floating_point() for t in (gamma, beta, scale, shift))
    if h.dtype not in DTYPE_CODES or h.numel() == 0 or not params_ok or not _is_number(eps):
        return gn_film_silu_ref(h, gamma, beta, scale, shift, num_groups, eps)
    if _requires_grad(h, gamma, beta, scale, shift):
        return _GnFilmSiluFunction.apply(h, gamma, beta, scale, shift, int(num_groups), float(eps))
    return _gn_forward(h, gamma, beta, scale, shift, int(num_groups), float(eps))[0]


# ------------------------------------------------------------------------------------------------ conv block
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
    _check_device(fn, x.device, weight=weight, bias=bias)
    h = F.conv1d(x, weight, bias, padding=1)
    return gn_film_silu_cuda(h, gamma, beta, scale, shift, num_groups, eps)


# ------------------------------------------------------------------------------------------------ FM loss
def _fm_loss_forward(v, x0, x1, sigma_min: float, reduction: str, want_grad: bool):
    mod = loader.get_module()
    B, C, L = v.shape
    N = C * L
    vc, x0c, x1c = v.detach().contiguous(), x0.detach().contiguous(), x1.detach().contiguous()
    dev = v.device
    loss = torch.empty(() if reduction == "mean" else (B,), dtype=torch.float32, device=dev)
    grad = torch.empty((B, C, L), dtype=torch.float32, device=dev) if want_grad else None
    with _device_guard(dev):
        ws_bytes = mod.fm_loss_workspace_bytes(B, N)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
        mod.fm_loss_fwd(vc.data_ptr(), x0c.data_ptr(), x1c.data_ptr(), _ptr(grad), loss.data_ptr(), ws.data_ptr(),
                        ws_bytes, B, N, float(sigma_min), _REDUCTION_CODES[reduction], DTYPE_CODES[v.dtype],
                        DTYPE_CODES[x0.dtype], _stream(dev))
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
    _check_same_shape(fn, v=v, x0=x0, x1=x1)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction={reduction!r}; expected one of {REDUCTIONS}")
    _check_device(fn, v.device, x0=x0, x1=x1)
    if (v.dtype not in DTYPE_CODES or _kernel_dtype(x0, x1) is None or v.numel() == 0
            or not _is_number(sigma_min)):
        return flow_matching_loss_ref(v, x0, x1, sigma_min, reduction)
    if _requires_grad(v, x0, x1):
        return _FlowMatchingLossFunction.apply(v, x0, x1, float(sigma_min), reduction)
    return _fm_loss_forward(v, x0, x1, float(sigma_min), reduction, want_grad=False)[0]


def interpolate_cuda(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` with per-sample t (B,); the result has x1's dtype."""
    fn = "interpolate_cuda"
    B, C, L = _check_same_shape(fn, x0=x0, x1=x1)
    _check_device(fn, x1.device, x0=x0)
    if (_kernel_dtype(x0, x1) is None or x1.numel() == 0 or not _is_number(sigma_min)
            or _requires_grad(x0, x1, t)):
        return interpolate_ref(x0, x1, t, sigma_min)
    dev = x1.device
    t32 = _per_sample_f32(fn, "t", t, B, dev)
    x0c, x1c = x0.contiguous(), x1.contiguous()
    out = torch.empty((B, C, L), dtype=x1.dtype, device=dev)
    mod = loader.get_module()
    with _device_guard(dev):
        mod.interpolate(x0c.data_ptr(), x1c.data_ptr(), t32.data_ptr(), out.data_ptr(), B, C * L, float(sigma_min),
                        DTYPE_CODES[x1.dtype], _stream(dev))
    return out


# ------------------------------------------------------------------------------------------------ ODE steps
def _step_shapes(fn: str, x: torch.Tensor, **others: Optional[torch.Tensor]) -> tuple[int, int, int]:
    if x.dim() != 3:
        raise ValueError(f"{fn}: x must be (B, C, L), got {tuple(x.shape)}")
    for name, t in others.items():
        if t is not None and t.shape != x.shape:
            raise ValueError(f"{fn}: {name} must have the shape of x {tuple(x.shape)}, got {tuple(t.shape)}")
    _check_device(fn, x.device, **others)
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
    if (x.dtype not in DTYPE_CODES or _kernel_dtype(v, v_null) is None or (out is not None and out.dtype != x.dtype)
            or x.numel() == 0 or not _is_number(guidance) or _requires_grad(x, v, v_null, dt)):
        return euler_step_ref(x, v, dt, out, v_null, guidance)
    dev = x.device
    dt32 = _per_sample_f32(fn, "dt", dt, B, dev)
    xc, vc, vnc = x.contiguous(), v.contiguous(), _contig(v_null)
    buf, copy_to = _step_out(out, (B, C, L), x.dtype, dev)
    mod = loader.get_module()
    with _device_guard(dev):
        mod.euler_step(xc.data_ptr(), vc.data_ptr(), _ptr(vnc), dt32.data_ptr(), buf.data_ptr(), B, C * L,
                       float(guidance), DTYPE_CODES[x.dtype], DTYPE_CODES[v.dtype], _stream(dev))
    return _finish(buf, copy_to, out)


def heun_correct_cuda(x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, dt: torch.Tensor,
                      out: Optional[torch.Tensor] = None, v1_null: Optional[torch.Tensor] = None,
                      v2_null: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    """``out = x + dt_b / 2 * (g(v1, v1_null) + g(v2, v2_null))`` (Heun's corrector)."""
    fn = "heun_correct_cuda"
    B, C, L = _step_shapes(fn, x, v1=v1, v2=v2, out=out, v1_null=v1_null, v2_null=v2_null)
    if (x.dtype not in DTYPE_CODES or _kernel_dtype(v1, v2, v1_null, v2_null) is None
            or (out is not None and out.dtype != x.dtype) or x.numel() == 0 or not _is_number(guidance)
            or _requires_grad(x, v1, v2, v1_null, v2_null, dt)):
        return heun_correct_ref(x, v1, v2, dt, out, v1_null, v2_null, guidance)
    dev = x.device
    dt32 = _per_sample_f32(fn, "dt", dt, B, dev)
    xc, v1c, v2c, n1, n2 = x.contiguous(), v1.contiguous(), v2.contiguous(), _contig(v1_null), _contig(v2_null)
    buf, copy_to = _step_out(out, (B, C, L), x.dtype, dev)
    mod = loader.get_module()
    with _device_guard(dev):
        mod.heun_correct(xc.data_ptr(), v1c.data_ptr(), v2c.data_ptr(), _ptr(n1), _ptr(n2), dt32.data_ptr(),
                         buf.data_ptr(), B, C * L, float(guidance), DTYPE_CODES[x.dtype], DTYPE_CODES[v1.dtype],
                         _stream(dev))
    return _finish(buf, copy_to, out)


def rk4_combine_cuda(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor, k4: torch.Tensor,
                     dt: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = x + dt_b / 6 * (k1 + 2 k2 + 2 k3 + k4)``."""
    fn = "rk4_combine_cuda"
    B, C, L = _step_shapes(fn, x, k1=k1, k2=k2, k3=k3, k4=k4, out=out)
    if (x.dtype not in DTYPE_CODES or _kernel_dtype(k1, k2, k3, k4) is None
            or (out is not None and out.dtype != x.dtype) or x.numel() == 0
            or _requires_grad(x, k1, k2, k3, k4, dt)):
        return rk4_combine_ref(x, k1, k2, k3, k4, dt, out)
    dev = x.device
    dt32 = _per_sample_f32(fn, "dt", dt, B, dev)
    xc, c1, c2, c3, c4 = x.contiguous(), k1.contiguous(), k2.contiguous(), k3.contiguous(), k4.contiguous()
    buf, copy_to = _step_out(out, (B, C, L), x.dtype, dev)
    mod = loader.get_module()
    with _device_guard(dev):
        mod.rk4_combine(xc.data_ptr(), c1.data_ptr(), c2.data_ptr(), c3.data_ptr(), c4.data_ptr(), dt32.data_ptr(),
                        buf.data_ptr(), B, C * L, DTYPE_CODES[x.dtype], DTYPE_CODES[k1.dtype], _stream(dev))
    return _finish(buf, copy_to, out)


def guidance_combine_cuda(v: torch.Tensor, v_null: torch.Tensor, guidance: float,
                          out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = v_null + w (v - v_null)``, of v's dtype."""
    fn = "guidance_combine_cuda"
    shape = tuple(v.shape)
    if v_null.shape != v.shape or (out is not None and out.shape != v.shape):
        raise ValueError(f"{fn}: v_null and out must have the shape of v {shape}")
    _check_device(fn, v.device, v_null=v_null, out=out)
    if (_kernel_dtype(v, v_null) is None or (out is not None and out.dtype != v.dtype) or v.numel() == 0
            or not _is_number(guidance) or _requires_grad(v, v_null)):
        return guidance_combine_ref(v, v_null, guidance, out)
    dev = v.device
    vc, nc = v.contiguous(), v_null.contiguous()
    buf, copy_to = _step_out(out, shape, v.dtype, dev)
    mod = loader.get_module()
    with _device_guard(dev):
        mod.guidance_combine(vc.data_ptr(), nc.data_ptr(), buf.data_ptr(), v.numel(), float(guidance),
                             DTYPE_CODES[v.dtype], _stream(dev))
    return _finish(buf, copy_to, out)
