"""Triton ODE-solver updates: batched, per-sample step size, in place, guidance combine fused in.

Maths (w = guidance weight; g(v, v_null) = v_null + w (v - v_null), or v when v_null is absent):

    euler_step      out = x + dt_b g(v, v_null)                             (Euler, predictors, midpoint stages)
    heun_correct    out = x + dt_b / 2 (g(v1, v1_null) + g(v2, v2_null))   (Heun's second stage)
    rk4_combine     out = x + dt_b / 6 (k1 + 2 k2 + 2 k3 + k4)             (k_i already guided)
    guidance_combine out = g(v, v_null)

Shapes: x, v, ... (B, C, L) with any strides (no hidden copies; rows of C*L elements are read with vector loads
when uniformly strided); dt (B,) of any float dtype and stride (a 0-d tensor or Python number is broadcast).
fp16 / bf16 / fp32 operands, freely mixed (fp64 accepted, computed in fp32 like the eager reference); all
arithmetic in fp32. ``out=None`` allocates a contiguous tensor in x's dtype (v's for guidance_combine); ``out`` may be
``x`` itself (``v`` for guidance_combine) for an in-place update, any other overlap with an input is refused. With
``guidance == 1`` the null velocities are not read (g = v exactly in real arithmetic; saves their traffic).

Each op is one kernel reading every operand once and writing ``out`` once, i.e. the minimum traffic
(n = B C L elements, e = bytes per element; the (B,) step sizes add 4 B bytes; an FMA counts 2 FLOPs):

    euler_step        bytes 3 n e  (4 n e with v_null)      FLOPs 2 n  (5 n guided)
    heun_correct      bytes 4 n e  (6 n e with both nulls)  FLOPs 4 n  (10 n guided)
    rk4_combine       bytes 6 n e                           FLOPs 7 n
    guidance_combine  bytes 3 n e                           FLOPs 3 n

(:func:`euler_step_cost`, :func:`heun_correct_cost`, :func:`rk4_combine_cost`, :func:`guidance_combine_cost`.)

Block size and warps are autotuned on the GPU per (row length, batch-size bucket, dtypes); the tuner restores
``out`` between its timing runs, so in-place calls are safe. Its first call for a new shape benchmarks, so warm up
before CUDA-graph capture (as capture needs anyway). Rows that are not uniformly strided (e.g. channels-last, or a
length crop ``v[..., :L]`` of a padded tensor) take a general index path with scalar loads: correct, but slower.

The steps are for sampling and are not differentiable (outputs carry no autograd history).

torch.library custom ops (namespace ``flowfm``, ``out`` declared mutated, fake kernels registered):
``flowfm::euler_step_triton(x, v, dt, out, v_null, guidance)``,
``flowfm::heun_correct_triton(x, v1, v2, dt, out, v1_null, v2_null, guidance)``,
``flowfm::rk4_combine_triton(x, k1, k2, k3, k4, dt, out)``, ``flowfm::guidance_combine_triton(v, v_null, guidance,
out)``, all returning nothing. The public functions use them while torch.compile traces and launch the kernels
directly in eager mode (lower Python overhead per call).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from flowfm_kernels import triton_support as ts
from flowfm_kernels.triton_support import row_tile, sample_offsets

# --------------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _load_f32(ptr, b, n, mask, L, sb, s1, s2, FLAT: tl.constexpr, VEC: tl.constexpr):
    return tl.load(ptr + sample_offsets(b, n, L, sb, s1, s2, FLAT, VEC), mask=mask).to(tl.float32)


@triton.jit
def _guided(v, v_null, w, HAS_NULL: tl.constexpr):
    if HAS_NULL:
        return v_null + w * (v - v_null)
    else:
        return v


@ts.elementwise_autotune(key=["N", "B_BUCKET"], restore_value=["out_ptr"])
@triton.jit
def _euler_kernel(x_ptr, v_ptr, vn_ptr, dt_ptr, out_ptr, N, L, B_BUCKET,
                  sxb, sx1, sx2, svb, sv1, sv2, snb, sn1, sn2, sob, so1, so2, sdt, w,
                  BLOCK: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr, HAS_NULL: tl.constexpr):
    b, n, mask, N = row_tile(N, BLOCK, VEC)
    dt = tl.load(dt_ptr + b * sdt).to(tl.float32)
    x = _load_f32(x_ptr, b, n, mask, L, sxb, sx1, sx2, FLAT, VEC)
    v = _load_f32(v_ptr, b, n, mask, L, svb, sv1, sv2, FLAT, VEC)
    if HAS_NULL:
        vn = _load_f32(vn_ptr, b, n, mask, L, snb, sn1, sn2, FLAT, VEC)
    else:
        vn = v
    y = x + dt * _guided(v, vn, w, HAS_NULL)
    tl.store(out_ptr + sample_offsets(b, n, L, sob, so1, so2, FLAT, VEC), y.to(out_ptr.dtype.element_ty), mask=mask)


@ts.elementwise_autotune(key=["N", "B_BUCKET"], restore_value=["out_ptr"])
@triton.jit
def _heun_kernel(x_ptr, v1_ptr, v2_ptr, n1_ptr, n2_ptr, dt_ptr, out_ptr, N, L, B_BUCKET,
                 sxb, sx1, sx2, s1b, s11, s12, s2b, s21, s22, sn1b, sn11, sn12, sn2b, sn21, sn22,
                 sob, so1, so2, sdt, w,
                 BLOCK: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr,
                 HAS_NULL1: tl.constexpr, HAS_NULL2: tl.constexpr):
    b, n, mask, N = row_tile(N, BLOCK, VEC)
    dt = tl.load(dt_ptr + b * sdt).to(tl.float32)
    x = _load_f32(x_ptr, b, n, mask, L, sxb, sx1, sx2, FLAT, VEC)
    v1 = _load_f32(v1_ptr, b, n, mask, L, s1b, s11, s12, FLAT, VEC)
    v2 = _load_f32(v2_ptr, b, n, mask, L, s2b, s21, s22, FLAT, VEC)
    if HAS_NULL1:
        n1 = _load_f32(n1_ptr, b, n, mask, L, sn1b, sn11, sn12, FLAT, VEC)
    else:
        n1 = v1
    if HAS_NULL2:
        n2 = _load_f32(n2_ptr, b, n, mask, L, sn2b, sn21, sn22, FLAT, VEC)
    else:
        n2 = v2
    avg = 0.5 * (_guided(v1, n1, w, HAS_NULL1) + _guided(v2, n2, w, HAS_NULL2))
    y = x + dt * avg
    tl.store(out_ptr + sample_offsets(b, n, L, sob, so1, so2, FLAT, VEC), y.to(out_ptr.dtype.element_ty), mask=mask)


@ts.elementwise_autotune(key=["N", "B_BUCKET"], restore_value=["out_ptr"])
@triton.jit
def _rk4_kernel(x_ptr, k1_ptr, k2_ptr, k3_ptr, k4_ptr, dt_ptr, out_ptr, N, L, B_BUCKET,
                sxb, sx1, sx2, s1b, s11, s12, s2b, s21, s22, s3b, s31, s32, s4b, s41, s42, sob, so1, so2, sdt,
                BLOCK: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr):
    b, n, mask, N = row_tile(N, BLOCK, VEC)
    dt6 = tl.load(dt_ptr + b * sdt).to(tl.float32) / 6.0
    x = _load_f32(x_ptr, b, n, mask, L, sxb, sx1, sx2, FLAT, VEC)
    k = _load_f32(k1_ptr, b, n, mask, L, s1b, s11, s12, FLAT, VEC)
    k = k + 2.0 * _load_f32(k2_ptr, b, n, mask, L, s2b, s21, s22, FLAT, VEC)
    k = k + 2.0 * _load_f32(k3_ptr, b, n, mask, L, s3b, s31, s32, FLAT, VEC)
    k = k + _load_f32(k4_ptr, b, n, mask, L, s4b, s41, s42, FLAT, VEC)
    y = x + dt6 * k
    tl.store(out_ptr + sample_offsets(b, n, L, sob, so1, so2, FLAT, VEC), y.to(out_ptr.dtype.element_ty), mask=mask)


@ts.elementwise_autotune(key=["N", "B_BUCKET"], restore_value=["out_ptr"])
@triton.jit
def _guidance_kernel(v_ptr, vn_ptr, out_ptr, N, L, B_BUCKET, svb, sv1, sv2, snb, sn1, sn2, sob, so1, so2, w,
                     BLOCK: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr):
    b, n, mask, N = row_tile(N, BLOCK, VEC)
    v = _load_f32(v_ptr, b, n, mask, L, svb, sv1, sv2, FLAT, VEC)
    vn = _load_f32(vn_ptr, b, n, mask, L, snb, sn1, sn2, FLAT, VEC)
    y = vn + w * (v - vn)
    tl.store(out_ptr + sample_offsets(b, n, L, sob, so1, so2, FLAT, VEC), y.to(out_ptr.dtype.element_ty), mask=mask)


# -------------------------------------------------------------------------------------------------- launchers


def _prepare(like: torch.Tensor, out: Optional[torch.Tensor], dt, **inputs: Optional[torch.Tensor]):
    """Validate operands, allocate ``out`` if needed; returns (out, dt as (B,) tensor or None, device)."""
    if like.dim() != 3:
        raise ValueError(f"expected (B, C, L) tensors, got shape {tuple(like.shape)}")
    for name, t in inputs.items():
        if t is not None and t.shape != like.shape:
            raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(t.shape)}")
    ts.check_float(**inputs)
    device = ts.check_launchable(*inputs.values(), out)
    if dt is not None:
        dt = ts.per_sample(dt, like.shape[0], device)
        ts.check_float(dt=dt)
    if out is None:
        out = torch.empty(like.shape, dtype=like.dtype, device=device)
    else:
        ts.check_output(out, like, **inputs)
    return out, dt, device


def _grid(B: int, N: int):
    return lambda meta: (B * ts.cdiv(N, meta["BLOCK"]),)


def _dt_stride(dt: torch.Tensor) -> int:
    return dt.stride(0) if dt.shape[0] > 1 else 0


def _launch_euler(x, v, dt, out, v_null, guidance: float) -> None:
    B, C, L = x.shape
    N = C * L
    if out.numel() == 0:
        return
    has_null = v_null is not None and guidance != 1.0
    vn = v_null if has_null else None
    flat, vec, lays = ts.row_layouts(x, v, vn, out)
    with ts.device_guard(out.device):
        _euler_kernel[_grid(B, N)](x, v, vn if has_null else x, dt, out, N, L, ts.log2_bucket(B),
                                   *ts.stride_args(lays, flat), _dt_stride(dt), float(guidance),
                                   FLAT=flat, VEC=vec, HAS_NULL=has_null)


def _launch_heun(x, v1, v2, dt, out, v1_null, v2_null, guidance: float) -> None:
    B, C, L = x.shape
    N = C * L
    if out.numel() == 0:
        return
    n1 = v1_null if v1_null is not None and guidance != 1.0 else None
    n2 = v2_null if v2_null is not None and guidance != 1.0 else None
    flat, vec, lays = ts.row_layouts(x, v1, v2, n1, n2, out)
    with ts.device_guard(out.device):
        _heun_kernel[_grid(B, N)](x, v1, v2, x if n1 is None else n1, x if n2 is None else n2, dt, out, N, L,
                                  ts.log2_bucket(B), *ts.stride_args(lays, flat), _dt_stride(dt), float(guidance),
                                  FLAT=flat, VEC=vec, HAS_NULL1=n1 is not None, HAS_NULL2=n2 is not None)


def _launch_rk4(x, k1, k2, k3, k4, dt, out) -> None:
    B, C, L = x.shape
    N = C * L
    if out.numel() == 0:
        return
    flat, vec, lays = ts.row_layouts(x, k1, k2, k3, k4, out)
    with ts.device_guard(out.device):
        _rk4_kernel[_grid(B, N)](x, k1, k2, k3, k4, dt, out, N, L, ts.log2_bucket(B), *ts.stride_args(lays, flat),
                                 _dt_stride(dt), FLAT=flat, VEC=vec)


def _launch_guidance(v, v_null, guidance: float, out) -> None:
    B, C, L = v.shape
    N = C * L
    if out.numel() == 0:
        return
    flat, vec, lays = ts.row_layouts(v, v_null, out)
    with ts.device_guard(out.device):
        _guidance_kernel[_grid(B, N)](v, v_null, out, N, L, ts.log2_bucket(B), *ts.stride_args(lays, flat),
                                      float(guidance), FLAT=flat, VEC=vec)


# ---------------------------------------------------------------------------------- torch.library custom ops


@torch.library.custom_op("flowfm::euler_step_triton", mutates_args=("out",))
def euler_step_op(x: torch.Tensor, v: torch.Tensor, dt: torch.Tensor, out: torch.Tensor,
                  v_null: Optional[torch.Tensor], guidance: float) -> None:
    """out = x + dt_b g(v, v_null) (``out`` may be ``x``)."""
    out, dt, _ = _prepare(x, out, dt, x=x, v=v, v_null=v_null)
    _launch_euler(x, v, dt, out, v_null, guidance)


@euler_step_op.register_fake
def _(x, v, dt, out, v_null, guidance):
    return None


@torch.library.custom_op("flowfm::heun_correct_triton", mutates_args=("out",))
def heun_correct_op(x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, dt: torch.Tensor, out: torch.Tensor,
                    v1_null: Optional[torch.Tensor], v2_null: Optional[torch.Tensor], guidance: float) -> None:
    """out = x + dt_b / 2 (g(v1, v1_null) + g(v2, v2_null)) (``out`` may be ``x``)."""
    out, dt, _ = _prepare(x, out, dt, x=x, v1=v1, v2=v2, v1_null=v1_null, v2_null=v2_null)
    _launch_heun(x, v1, v2, dt, out, v1_null, v2_null, guidance)


@heun_correct_op.register_fake
def _(x, v1, v2, dt, out, v1_null, v2_null, guidance):
    return None


@torch.library.custom_op("flowfm::rk4_combine_triton", mutates_args=("out",))
def rk4_combine_op(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor, k4: torch.Tensor,
                   dt: torch.Tensor, out: torch.Tensor) -> None:
    """out = x + dt_b / 6 (k1 + 2 k2 + 2 k3 + k4) (``out`` may be ``x``)."""
    out, dt, _ = _prepare(x, out, dt, x=x, k1=k1, k2=k2, k3=k3, k4=k4)
    _launch_rk4(x, k1, k2, k3, k4, dt, out)


@rk4_combine_op.register_fake
def _(x, k1, k2, k3, k4, dt, out):
    return None


@torch.library.custom_op("flowfm::guidance_combine_triton", mutates_args=("out",))
def guidance_combine_op(v: torch.Tensor, v_null: torch.Tensor, guidance: float, out: torch.Tensor) -> None:
    """out = v_null + w (v - v_null) (``out`` may be ``v``)."""
    out, _, _ = _prepare(v, out, None, v=v, v_null=v_null)
    _launch_guidance(v, v_null, guidance, out)


@guidance_combine_op.register_fake
def _(v, v_null, guidance, out):
    return None


def _compiling() -> bool:
    return torch.compiler.is_compiling()


# ------------------------------------------------------------------------------------------------ public API


def euler_step_triton(x: torch.Tensor, v: torch.Tensor, dt, out: Optional[torch.Tensor] = None,
                      v_null: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    """``out = x + dt_b * (v_null + w (v - v_null))`` (``v`` alone without ``v_null``); returns ``out``.

    x, v, v_null, out: (B, C, L); dt: (B,). ``out=x`` updates in place. Bytes / FLOPs: :func:`euler_step_cost`."""
    out, dt, _ = _prepare(x, out, dt, x=x, v=v, v_null=v_null)
    if _compiling():
        torch.ops.flowfm.euler_step_triton(x, v, dt, out, v_null, float(guidance))
    else:
        _launch_euler(x, v, dt, out, v_null, float(guidance))
    return out


def heun_correct_triton(x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, dt, out: Optional[torch.Tensor] = None,
                        v1_null: Optional[torch.Tensor] = None, v2_null: Optional[torch.Tensor] = None,
                        guidance: float = 1.0) -> torch.Tensor:
    """``out = x + dt_b / 2 * (g(v1, v1_null) + g(v2, v2_null))``: Heun's corrector; returns ``out``.

    All tensors (B, C, L) but dt (B,); either null may be absent. Bytes / FLOPs: :func:`heun_correct_cost`."""
    out, dt, _ = _prepare(x, out, dt, x=x, v1=v1, v2=v2, v1_null=v1_null, v2_null=v2_null)
    if _compiling():
        torch.ops.flowfm.heun_correct_triton(x, v1, v2, dt, out, v1_null, v2_null, float(guidance))
    else:
        _launch_heun(x, v1, v2, dt, out, v1_null, v2_null, float(guidance))
    return out


def rk4_combine_triton(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor, k4: torch.Tensor, dt,
                       out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = x + dt_b / 6 * (k1 + 2 k2 + 2 k3 + k4)`` with already-guided stage velocities; returns ``out``.

    Bytes / FLOPs: :func:`rk4_combine_cost`."""
    out, dt, _ = _prepare(x, out, dt, x=x, k1=k1, k2=k2, k3=k3, k4=k4)
    if _compiling():
        torch.ops.flowfm.rk4_combine_triton(x, k1, k2, k3, k4, dt, out)
    else:
        _launch_rk4(x, k1, k2, k3, k4, dt, out)
    return out


def guidance_combine_triton(v: torch.Tensor, v_null: torch.Tensor, guidance: float,
                            out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = v_null + w (v - v_null)`` in v's dtype (``out=v`` in place); returns ``out``.

    Bytes / FLOPs: :func:`guidance_combine_cost`."""
    if v_null is None:
        raise ValueError("guidance_combine needs v_null")
    out, _, _ = _prepare(v, out, None, v=v, v_null=v_null)
    if _compiling():
        torch.ops.flowfm.guidance_combine_triton(v, v_null, float(guidance), out)
    else:
        _launch_guidance(v, v_null, float(guidance), out)
    return out


# ---------------------------------------------------------------------------------------------- cost models
# n = B C L elements, e = bytes per element (all operands in ``dtype``), dt read as 4 B bytes. FLOPs count an FMA as 2.


def _sizes(B: int, C: int, L: int, dtype: torch.dtype) -> tuple[int, int]:
    return B * C * L, ts.dtype_bytes(dtype)


def euler_step_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32, guided: bool = False) -> dict:
    """Read x, v (and v_null when guided with w != 1), write out. FLOPs per element: x + dt g (2), guidance (3)."""
    n, e = _sizes(B, C, L, dtype)
    tensors = 3 + (1 if guided else 0)
    return dict(bytes=tensors * n * e + 4 * B, flops=n * (2 + (3 if guided else 0)))


def heun_correct_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32, guided: bool = False) -> dict:
    """Read x, v1, v2 (and both nulls when guided), write out. FLOPs per element: sum, halve, x + dt avg (4),
    guidance 3 per stage."""
    n, e = _sizes(B, C, L, dtype)
    tensors = 4 + (2 if guided else 0)
    return dict(bytes=tensors * n * e + 4 * B, flops=n * (4 + (6 if guided else 0)))


def rk4_combine_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32) -> dict:
    """Read x, k1..k4, write out. FLOPs per element: k1 + 2k2 + 2k3 + k4 (5), x + dt/6 k (2)."""
    n, e = _sizes(B, C, L, dtype)
    return dict(bytes=6 * n * e + 4 * B, flops=7 * n)


def guidance_combine_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32) -> dict:
    """Read v, v_null, write out. FLOPs per element: v_null + w (v - v_null) (3)."""
    n, e = _sizes(B, C, L, dtype)
    return dict(bytes=3 * n * e, flops=3 * n)


__all__ = ["euler_step_triton", "heun_correct_triton", "rk4_combine_triton", "guidance_combine_triton",
           "euler_step_cost", "heun_correct_cost", "rk4_combine_cost", "guidance_combine_cost"]
