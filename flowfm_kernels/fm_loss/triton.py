"""Triton flow-matching loss (one pass over the data gives the loss and what dL/dv needs) and path interpolation.

Maths (conditional OT / rectified-flow path with minimum noise s = sigma_min; per sample b, time t_b):

    x_t = (1 - (1 - s) t_b) x0 + t_b x1                          interpolate_triton
    u   = x1 - (1 - s) x0                                        (never materialised)
    d   = v - u
    L   = sum_{b,c,l} d^2 / (B C L)          ("mean", float32 scalar)
    L_b = sum_{c,l} d_b^2 / (C L)            ("per_sample", float32 (B,))
    dL/dv = 2 d / (B C L)   resp.   dL_b/dv_b = 2 d_b / (C L)    (d saved by the forward pass)
    dL/dx1 = -dL/dv,  dL/dx0 = (1 - s) dL/dv                     (from the same saved tensor)

Shapes: v, x0, x1 (B, C, L), any strides (no hidden copies), fp16 / bf16 / fp32 (fp64 accepted, computed in fp32
like the eager reference); t (B,). All arithmetic is fp32 inside the kernels.

The forward kernel reads (v, x0, x1) once and writes one fp32 partial sum per program (B * ceil(CL / BLOCK) of
them) plus, only when some input requires grad, the residual d = v - u in v's dtype: that is dL/dv up to the factor
2 / count, which backward applies in fp32 (storing 2 d / count itself would sink into fp16's subnormal range for
large batches before a loss scale could lift it). A second tiny kernel sums the partials in a fixed order (no float
atomics), so the loss is bitwise reproducible run to run. The forward tile is a fixed function of the shape and the
GPU's SM count, not autotuned, so the summation order (hence the bits) cannot change with whichever config a
timing-based autotuner happens to pick in a given process. Backward multiplies the saved residual by 2 / count and
grad_output (per sample for "per_sample") in fp32: one elementwise pass per input that needs a gradient.

Cost per call (n = B C L elements, e = bytes per element; the minimum traffic, which is what the kernels move, up
to the fp32 partial sums, 4 bytes per BLOCK >= 256 elements):

    loss forward      bytes 3 n e (+ n e residual when training) + 4 (or 4 B)     FLOPs 5 n
    loss backward     bytes 2 n e per input needing a gradient                    FLOPs n per input
    interpolate       bytes 3 n e + 4 B                                           FLOPs 3 n

(:func:`flow_matching_loss_cost`, :func:`flow_matching_loss_backward_cost`, :func:`interpolate_cost`.)

torch.library custom ops (namespace ``flowfm``; traceable by torch.compile, with fake/meta kernels):
``flowfm::flow_matching_loss_triton(v, x0, x1, sigma_min, reduction, need_grad) -> (loss, d)`` (autograd
registered; d = v - u is the saved residual, empty unless need_grad),
``flowfm::fm_loss_scale_grad_triton(saved, grad_out, coef, dtype) -> grad`` and
``flowfm::interpolate_triton(x0, x1, t, sigma_min) -> x_t`` (autograd registered). The public functions call these
ops while torch.compile traces, and go straight to the kernels (an ``autograd.Function`` for the loss) in eager
mode, which keeps Python overhead per call low.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from flowfm_kernels import triton_support as ts
from flowfm_kernels.fm_loss.reference import REDUCTIONS
from flowfm_kernels.triton_support import row_tile, sample_offsets

# --------------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _fm_loss_fwd_kernel(v_ptr, x0_ptr, x1_ptr, grad_ptr, partial_ptr, N, L,
                        svb, sv1, sv2, s0b, s01, s02, s1b, s11, s12,
                        one_minus_s,
                        BLOCK: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr, WRITE_GRAD: tl.constexpr):
    """Program ``pid`` covers elements [blk*BLOCK, (blk+1)*BLOCK) of sample b (pid = b*nblk + blk); it writes
    partial[pid] = sum d^2 over its tile and, if WRITE_GRAD, the residual resid[b, n] = d (contiguous)."""
    b64, n, mask, N = row_tile(N, BLOCK, VEC)
    pid = tl.program_id(0)
    v = tl.load(v_ptr + sample_offsets(b64, n, L, svb, sv1, sv2, FLAT, VEC), mask=mask, other=0.0)
    x0 = tl.load(x0_ptr + sample_offsets(b64, n, L, s0b, s01, s02, FLAT, VEC), mask=mask, other=0.0)
    x1 = tl.load(x1_ptr + sample_offsets(b64, n, L, s1b, s11, s12, FLAT, VEC), mask=mask, other=0.0)
    d = v.to(tl.float32) - (x1.to(tl.float32) - one_minus_s * x0.to(tl.float32))  # masked lanes: exactly 0
    tl.store(partial_ptr + pid, tl.sum(d * d, axis=0))
    if WRITE_GRAD:
        base = b64 * N
        if VEC > 1:
            base = tl.multiple_of(base, VEC)
        tl.store(grad_ptr + base + n, d.to(grad_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sum_rows_kernel(partial_ptr, out_ptr, NCOLS, count, RBLOCK: tl.constexpr):
    """out[row] = sum(partial[row, :]) / count, summed in a fixed order (strided accumulate, then a tree)."""
    row = tl.program_id(0)
    base = row.to(tl.int64) * NCOLS
    acc = tl.zeros([RBLOCK], dtype=tl.float32)
    for start in range(0, NCOLS, RBLOCK):
        idx = start + tl.arange(0, RBLOCK)
        acc += tl.load(partial_ptr + base + idx, mask=idx < NCOLS, other=0.0)
    tl.store(out_ptr + row, tl.sum(acc, axis=0) / count)


@ts.elementwise_autotune(key=["N", "B_BUCKET"])
@triton.jit
def _scale_rows_kernel(src_ptr, gout_ptr, dst_ptr, N, B_BUCKET, sgb, coef,
                       BLOCK: tl.constexpr, VEC: tl.constexpr):
    """dst[b, n] = coef * gout[b] * src[b, n] for contiguous (B, N) src / dst (sgb = 0 broadcasts a scalar)."""
    b64, n, mask, N = row_tile(N, BLOCK, VEC)
    g = tl.load(gout_ptr + b64 * sgb).to(tl.float32) * coef
    base = b64 * N
    if VEC > 1:
        base = tl.multiple_of(base, VEC)
    s = tl.load(src_ptr + base + n, mask=mask, other=0.0).to(tl.float32)
    tl.store(dst_ptr + base + n, (s * g).to(dst_ptr.dtype.element_ty), mask=mask)


@ts.elementwise_autotune(key=["N", "B_BUCKET"])
@triton.jit
def _interpolate_kernel(x0_ptr, x1_ptr, t_ptr, out_ptr, N, L, B_BUCKET,
                        s0b, s01, s02, s1b, s11, s12, st, one_minus_s,
                        BLOCK: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr):
    """out[b, n] = (1 - (1 - s) t_b) x0[b, n] + t_b x1[b, n]; out contiguous (B, N)."""
    b64, n, mask, N = row_tile(N, BLOCK, VEC)
    t = tl.load(t_ptr + b64 * st).to(tl.float32)
    x0 = tl.load(x0_ptr + sample_offsets(b64, n, L, s0b, s01, s02, FLAT, VEC), mask=mask).to(tl.float32)
    x1 = tl.load(x1_ptr + sample_offsets(b64, n, L, s1b, s11, s12, FLAT, VEC), mask=mask).to(tl.float32)
    xt = (1.0 - one_minus_s * t) * x0 + t * x1
    base = b64 * N
    if VEC > 1:
        base = tl.multiple_of(base, VEC)
    tl.store(out_ptr + base + n, xt.to(out_ptr.dtype.element_ty), mask=mask)


# -------------------------------------------------------------------------------------------------- launchers


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _loss_tile(B: int, N: int, device: torch.device) -> tuple[int, int]:
    """(BLOCK, num_warps) of the loss forward: a fixed function of (B, N, SM count), never timing-dependent, so the
    partial sums (and the loss bits) are reproducible across processes. Largest tile up to the row length that
    still gives about two programs per SM."""
    if ts.INTERPRETED_AT_IMPORT:
        return 256, 4
    block = min(4096, max(512, ts.next_power_of_2(N)))
    target = 2 * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    while block > 512 and B * ts.cdiv(N, block) < target:
        block //= 2
    return block, (4 if block <= 1024 else 8)


def _check_operands(**tensors: torch.Tensor) -> torch.device:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 3 or any(s != first for s in shapes.values()):
        raise ValueError(f"expected tensors of one shape (B, C, L), got {shapes}")
    ts.check_float(**tensors)
    return ts.check_launchable(*tensors.values())


def _loss_forward(v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sigma_min: float, reduction: str,
                  need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d = v - u) with d contiguous in v's dtype, or an empty (0,) tensor when ``need_grad`` is false."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
    device = _check_operands(v=v, x0=x0, x1=x1)
    B, C, L = v.shape
    N = C * L
    loss_shape = () if reduction == "mean" else (B,)
    grad = torch.empty((B, C, L), dtype=v.dtype, device=device) if need_grad else v.new_empty((0,))
    if B * N == 0:  # mean over nothing is NaN, as in torch
        loss = torch.full(loss_shape, float("nan"), dtype=torch.float32, device=device)
        return loss, grad.zero_()
    flat, vec, lays = ts.row_layouts(v, x0, x1, grad if need_grad else None)
    block, warps = _loss_tile(B, N, device)
    nblk = ts.cdiv(N, block)
    partial = torch.empty((B, nblk), dtype=torch.float32, device=device)
    count = B * N if reduction == "mean" else N
    loss = torch.empty(loss_shape, dtype=torch.float32, device=device)
    rows, cols = (1, B * nblk) if reduction == "mean" else (B, nblk)
    with ts.device_guard(device):
        _fm_loss_fwd_kernel[(B * nblk,)](
            v, x0, x1, grad if need_grad else v, partial, N, L,
            *ts.stride_args(lays[:3], flat), 1.0 - float(sigma_min),
            BLOCK=block, FLAT=flat, VEC=vec, WRITE_GRAD=need_grad, num_warps=warps)
        _sum_rows_kernel[(rows,)](partial, loss, cols, float(count),
                                  RBLOCK=128 if ts.INTERPRETED_AT_IMPORT else 1024, num_warps=4)
    return loss, grad


def _scale_grad(saved: torch.Tensor, grad_out: torch.Tensor, coef: float, dtype: torch.dtype) -> torch.Tensor:
    """``coef * grad_out[b] * saved[b]`` (grad_out a scalar or (B,)) in ``dtype``, computed in fp32."""
    ts.check_launchable(saved, grad_out)
    B = saved.shape[0]
    N = saved[0].numel() if B else 0
    out = torch.empty(saved.shape, dtype=dtype, device=saved.device)
    if out.numel() == 0:
        return out
    if grad_out.dim() == 0:
        sgb = 0
    elif grad_out.shape == (B,):
        sgb = grad_out.stride(0)
    else:
        raise ValueError(f"grad_output must be a scalar or (B,) = ({B},), got {tuple(grad_out.shape)}")
    saved = saved.contiguous()  # saved by our forward: contiguous already
    vec = ts.pow2_divisor(N)  # rows are contiguous: VEC | N makes every sample offset b * N a multiple too
    with ts.device_guard(saved.device):
        _scale_rows_kernel[lambda meta: (B * ts.cdiv(N, meta["BLOCK"]),)](
            saved, grad_out, out, N, ts.log2_bucket(B), sgb, float(coef), VEC=vec)
    return out


def _grad_factor(shape, reduction: str) -> float:
    """dL/dv = factor * d: 2 / count of the reduction."""
    B, C, L = shape
    count = B * C * L if reduction == "mean" else C * L
    return 2.0 / max(count, 1)


def _loss_backward(saved: torch.Tensor, grad_out: torch.Tensor, sigma_min: float, factor: float, needs, dtypes,
                   scale) -> tuple:
    """Gradients (v, x0, x1) from the saved residual d: dv = g f d, dx0 = (1-s) g f d, dx1 = -g f d (f = 2/count)."""
    if any(needs) and saved.numel() == 0 and grad_out.numel():
        raise RuntimeError("flow_matching_loss_triton: backward needs the forward's residual (call the op with "
                           "need_grad=True)")
    coefs = (factor, (1.0 - sigma_min) * factor, -factor)
    return tuple(scale(saved, grad_out, c, dt) if need else None for need, c, dt in zip(needs, coefs, dtypes))


def _interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float) -> torch.Tensor:
    device = _check_operands(x0=x0, x1=x1)
    B, C, L = x1.shape
    N = C * L
    t = ts.per_sample(t, B, device, "t")
    ts.check_float(t=t)
    out = torch.empty((B, C, L), dtype=x1.dtype, device=device)
    if out.numel() == 0:
        return out
    flat, vec, lays = ts.row_layouts(x0, x1, out)
    st = t.stride(0) if B > 1 else 0
    with ts.device_guard(device):
        _interpolate_kernel[lambda meta: (B * ts.cdiv(N, meta["BLOCK"]),)](
            x0, x1, t, out, N, L, ts.log2_bucket(B), *ts.stride_args(lays[:2], flat), st, 1.0 - float(sigma_min),
            FLAT=flat, VEC=vec)
    return out


# --------------------------------------------------------------------------------- autograd.Function (eager path)


class FlowMatchingLossFunction(torch.autograd.Function):
    """Eager autograd path: forward computes the loss and saves the residual d (dL/dv = 2 d / count) in one pass."""

    @staticmethod
    def forward(ctx, v, x0, x1, sigma_min: float, reduction: str):
        needs = tuple(bool(n) for n in ctx.needs_input_grad[:3])
        loss, grad = _loss_forward(v, x0, x1, sigma_min, reduction, any(needs))
        ctx.save_for_backward(grad)
        ctx.sigma_min = sigma_min
        ctx.factor = _grad_factor(v.shape, reduction)
        ctx.dtypes = (v.dtype, x0.dtype, x1.dtype)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (saved,) = ctx.saved_tensors
        grads = _loss_backward(saved, grad_out, ctx.sigma_min, ctx.factor, ctx.needs_input_grad[:3], ctx.dtypes,
                               _scale_grad)
        return grads + (None, None)


# ---------------------------------------------------------------------------------- torch.library custom ops


@torch.library.custom_op("flowfm::flow_matching_loss_triton", mutates_args=())
def flow_matching_loss_op(v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sigma_min: float,
                          reduction: str, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d = v - u); d is empty (0,) unless ``need_grad``. Differentiable in v, x0, x1."""
    return _loss_forward(v, x0, x1, sigma_min, reduction, need_grad)


@flow_matching_loss_op.register_fake
def _(v, x0, x1, sigma_min, reduction, need_grad):
    loss = v.new_empty(() if reduction == "mean" else (v.shape[0],), dtype=torch.float32)
    grad = v.new_empty(v.shape, dtype=v.dtype) if need_grad else v.new_empty((0,))
    return loss, grad


@torch.library.custom_op("flowfm::fm_loss_scale_grad_triton", mutates_args=())
def fm_loss_scale_grad_op(saved: torch.Tensor, grad_out: torch.Tensor, coef: float,
                          dtype: torch.dtype) -> torch.Tensor:
    """coef * grad_out[b] * saved[b] in ``dtype`` (fp32 math)."""
    return _scale_grad(saved, grad_out, coef, dtype)


@fm_loss_scale_grad_op.register_fake
def _(saved, grad_out, coef, dtype):
    return saved.new_empty(saved.shape, dtype=dtype)


def _loss_setup_context(ctx, inputs, output):
    v, x0, x1, sigma_min, reduction, need_grad = inputs
    ctx.save_for_backward(output[1])
    ctx.sigma_min = sigma_min
    ctx.factor = _grad_factor(v.shape, reduction)
    ctx.dtypes = (v.dtype, x0.dtype, x1.dtype)


def _loss_op_backward(ctx, grad_loss, grad_saved):
    (saved,) = ctx.saved_tensors
    grads = _loss_backward(saved, grad_loss, ctx.sigma_min, ctx.factor, ctx.needs_input_grad[:3], ctx.dtypes,
                           torch.ops.flowfm.fm_loss_scale_grad_triton)
    return grads + (None, None, None)

flow_matching_loss_op.register_autograd(_loss_op_backward, setup_context=_loss_setup_context)


@torch.library.custom_op("flowfm::interpolate_triton", mutates_args=())
def interpolate_op(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """x_t = (1 - (1 - s) t) x0 + t x1, contiguous, in x1's dtype."""
    return _interpolate(x0, x1, t, sigma_min)


@interpolate_op.register_fake
def _(x0, x1, t, sigma_min):
    return x1.new_empty(x1.shape)


def _interp_setup_context(ctx, inputs, output):
    x0, x1, t, sigma_min = inputs
    ctx.save_for_backward(x0, x1, t)
    ctx.sigma_min = sigma_min


def _interp_backward(ctx, g):
    x0, x1, t = ctx.saved_tensors
    a = 1.0 - ctx.sigma_min
    g32, tt = g.float(), t.float().reshape(-1, 1, 1)
    n0, n1, nt = ctx.needs_input_grad[:3]
    gx0 = (g32 * (1.0 - a * tt)).to(x0.dtype) if n0 else None
    gx1 = (g32 * tt).to(x1.dtype) if n1 else None
    gt = (g32 * (x1.float() - a * x0.float())).sum((1, 2)).to(t.dtype) if nt else None
    return gx0, gx1, gt, None

interpolate_op.register_autograd(_interp_backward, setup_context=_interp_setup_context)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


# ------------------------------------------------------------------------------------------------ public API


def flow_matching_loss_triton(v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = 0.0,
                              reduction: str = "mean") -> torch.Tensor:
    """Flow-matching loss ``mean (v - (x1 - (1 - sigma_min) x0))^2`` in one pass, differentiable in v (and x0, x1).

    v, x0, x1: (B, C, L), any strides, fp16/bf16/fp32. Returns a float32 scalar (``"mean"``) or (B,)
    (``"per_sample"``). Bytes / FLOPs: :func:`flow_matching_loss_cost`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
    sigma_min = float(sigma_min)
    need = torch.is_grad_enabled() and (v.requires_grad or x0.requires_grad or x1.requires_grad)
    if _compiling():
        return torch.ops.flowfm.flow_matching_loss_triton(v, x0, x1, sigma_min, reduction, need)[0]
    if not need:  # evaluation: no residual written, no autograd node
        return _loss_forward(v, x0, x1, sigma_min, reduction, False)[0]
    return FlowMatchingLossFunction.apply(v, x0, x1, sigma_min, reduction)


def interpolate_triton(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` with per-sample t (B,); reads x0, x1, t and writes x_t only.

    x0, x1: (B, C, L), any strides; returns a contiguous (B, C, L) tensor in x1's dtype. Differentiable (through
    the custom op) when an input requires grad. Bytes / FLOPs: :func:`interpolate_cost`."""
    sigma_min = float(sigma_min)
    needs_graph = torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in (x0, x1, t))
    if needs_graph or torch.compiler.is_compiling():
        if not isinstance(t, torch.Tensor):
            t = torch.full((x1.shape[0],), float(t), dtype=torch.float32, device=x1.device)
        return torch.ops.flowfm.interpolate_triton(x0, x1, t, sigma_min)
    return _interpolate(x0, x1, t, sigma_min)


# ---------------------------------------------------------------------------------------------- cost models


def flow_matching_loss_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32,
                            requires_grad: bool = True, reduction: str = "mean") -> dict:
    """Minimum traffic and FLOPs of the forward: read v, x0, x1 (3 n e), write the residual d = v - u for backward
    (n e) when training, write the fp32 loss (4 or 4B bytes). FLOPs per element: u = x1 - (1-s) x0 (2), d = v - u
    (1), d^2 accumulated (2). (The partial sums, 4 bytes per BLOCK elements, are below 0.1 % of the traffic.)"""
    n, e = B * C * L, ts.dtype_bytes(dtype)
    out = 4 if reduction == "mean" else 4 * B
    return dict(bytes=3 * n * e + (n * e if requires_grad else 0) + out, flops=5 * n)


def flow_matching_loss_backward_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32,
                                     n_inputs_with_grad: int = 1) -> dict:
    """Backward per input needing a gradient: read the saved residual and write the gradient (2 n e); 1 FLOP per
    element (the per-sample factor 2 g / count is a scalar)."""
    n, e = B * C * L, ts.dtype_bytes(dtype)
    return dict(bytes=n_inputs_with_grad * 2 * n * e, flops=n_inputs_with_grad * n)


def interpolate_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32) -> dict:
    """Read x0, x1 and t, write x_t: 3 n e + 4 B bytes; a x0 + t x1 is 3 FLOPs per element (the per-sample
    coefficient is negligible)."""
    n, e = B * C * L, ts.dtype_bytes(dtype)
    return dict(bytes=3 * n * e + 4 * B, flops=3 * n)


__all__ = ["flow_matching_loss_triton", "interpolate_triton", "FlowMatchingLossFunction",
           "flow_matching_loss_cost", "flow_matching_loss_backward_cost", "interpolate_cost"]
