"""Triton conv block: Conv1d(k=3, zero padding 1, stride 1) as an implicit GEMM + GroupNorm + FiLM + SiLU.

Maths (x: (B, Cin, L), W: (Cout, Cin, 3), bias: (Cout,) or None)::

    h[b, co, l] = bias[co] + sum_{ci, k} W[co, ci, k] * x[b, ci, l + k - 1]      (x = 0 outside [0, L))
    y           = SiLU( GN(h; gamma, beta) * (1 + scale) + shift )               see flowfm_kernels.gn_film_silu

Forward, two launches plus a tiny merge:

1. ``_conv1d_k3_kernel``: grid (B * l-tiles, co-tiles) (:func:`conv_grid`; the batch is folded into axis 0, whose
   limit is 2**31 - 1, not 65,535); each program accumulates a (BLOCK_CO, BLOCK_L) fp32 tile
   with ``tl.dot`` over ci blocks and the 3 taps (W[:, ci, k] @ x[ci, l + k - 1]). Epilogue: + bias, store h
   (x's dtype), and per-(b, co, l-tile) GroupNorm partials (tile mean and M2, two-pass in registers, computed from
   the *stored* (rounded) h so they describe exactly what step 3 reads).
2. ``_gn_merge_partials_kernel``: one program per (b, g) merges the Cg * n_ltiles partials with the exact
   parallel-variance formula  M2 = sum_i M2_i + n_i (mean_i - mean)^2  -> (B, G) mean, rstd. No E[x^2] - E[x]^2.
3. :func:`~flowfm_kernels.gn_film_silu.triton.gn_film_silu_apply`: one read of h, one write of y.

Backward: GN part by :func:`~flowfm_kernels.gn_film_silu.triton.gn_film_silu_backward` (-> dh, dgamma, dbeta,
dscale, dshift); dx is the transposed convolution, run by the same implicit-GEMM kernel with the weight
W'[ci, co, k] = W[co, ci, 2 - k]; dW[co, ci, k] = sum_{b, l} dh[b, co, l] x[b, ci, l + k - 1] and dbias by
``_conv1d_k3_wgrad_kernel``, a grid over (co-tile x tap, ci-tile, batch split; splits <= 2 * SMs) that loops over
its batches and all of L (tl.dot over l) for one tap (one fp32 accumulator: three spilled at 255 registers),
writes per-split partials, and ``torch.sum`` reduces them in a fixed order (no atomics).

Autotuning and determinism. Both conv kernels are autotuned (:func:`~flowfm_kernels.triton_support.tuned_autotune`)
per (channels, L, batch bucket, dtypes); configs whose shared memory exceeds sm_90's 227 KB are pruned before they
are compiled (:func:`conv_smem_bytes`). No kernel here uses float atomics: with the *same config* (and the same GPU
model, whose SM count sets the wgrad batch split) every reduction runs in a fixed order, so results are bitwise
identical run to run. The config, and with it the summation order (BLOCK_CI of the forward, BLOCK_L of the weight
gradient), is picked by timing and may differ between processes; with ``FLOWFM_DETERMINISTIC=1`` or
``torch.use_deterministic_algorithms(True)`` the first config that fits is pinned per shape bucket, which makes
results bitwise reproducible across processes too (same GPU model, Triton version and dot precision).

Alignment: the W tiles are read with Cin contiguous (a (3, Cout, Cin) copy of the small weight, :func:`_ci_contiguous`)
and L and the x / h row strides carry a power-of-two divisibility hint (``VEC``), so W and the centre-tap x loads
and the h stores are vector accesses for L = 300 (bf16 x tiles 8-byte; fp32 x tiles stay 4-byte copies: the tf32
MMA takes them transposed).

Precision of ``tl.dot`` (fp32 operands): ``FLOWFM_TRITON_DOT_PRECISION`` = ``tf32`` (default on GPU: tensor
cores, 10-bit mantissa, operands truncated; expect relative RMS errors about 1e-3 against an fp32 reference,
tests allow 5e-3), ``tf32x3`` (about fp32 accuracy, ~3x the MMA work) or ``ieee`` (fp32 FMA, 1e-5). fp16 / bf16
operands go to tensor cores natively with fp32 accumulation (precision flag ignored). Under the Triton interpreter
``tl.dot`` is computed in full fp32 (bf16 / fp16 operands are cast to fp32 first), so CPU tests use fp32
tolerances. For reference, PyTorch's cuDNN convs also use TF32 by default (``torch.backends.cudnn.allow_tf32``).

Strides: x, h, dh and dy are read through their strides (no copies); outputs are new contiguous tensors.
Bytes / FLOPs per call: :func:`conv_block_cost`. Ops for torch.compile: ``flowfm::conv_block_fwd`` (with autograd),
``flowfm::conv1d_k3`` (with autograd), ``flowfm::conv1d_k3_wgrad``.
"""
import functools
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from flowfm_kernels.gn_film_silu.triton import (_cfg, check_film_shapes, gn_film_silu_apply,
                                                gn_film_silu_backward, new_buffer)
from flowfm_kernels.triton_support import (INTERPRETED_AT_IMPORT, SMEM_LIMIT_BYTES, cdiv, check_float,
                                           check_launchable, dot_smem_bytes, dtype_bytes, fold_grid, hint_divisor,
                                           next_power_of_2, tune_key, tuned_autotune, vec_multiple)

Tensor = torch.Tensor

PRECISIONS = {"tf32": 0, "tf32x3": 1, "ieee": 2}


def dot_precision() -> str:
    """``$FLOWFM_TRITON_DOT_PRECISION`` (default ``"tf32"``): how ``tl.dot`` treats fp32 operands on a GPU."""
    value = os.environ.get("FLOWFM_TRITON_DOT_PRECISION", "tf32").strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"FLOWFM_TRITON_DOT_PRECISION={value!r}; expected one of {sorted(PRECISIONS)}")
    return value


def _dot_flags(dtype: torch.dtype, precision: str) -> dict:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    native = dtype in (torch.float16, torch.bfloat16) and not INTERPRETED_AT_IMPORT
    return dict(DOT_F32=not native, PRECISION=0 if native else PRECISIONS[precision])


def conv_block_l(L: int) -> int:
    """The l-tile of the forward conv kernel (fixed per L, not autotuned: it sets the GN-partials layout)."""
    cap = 32 if INTERPRETED_AT_IMPORT else 64
    return min(cap, max(16, next_power_of_2(L)))


# ----------------------------------------------------------------------------------------------- kernels
@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr):
    if PRECISION == 2:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    elif PRECISION == 1:
        acc = tl.dot(a, b, acc, input_precision="tf32x3")
    else:
        acc = tl.dot(a, b, acc)  # tf32 for fp32 operands on NVIDIA; native for fp16 / bf16
    return acc


_CONV_GPU_CONFIGS = [_cfg(4, 3, BLOCK_CO=64, BLOCK_CI=32), _cfg(4, 3, BLOCK_CO=64, BLOCK_CI=64),
                     _cfg(8, 3, BLOCK_CO=128, BLOCK_CI=32), _cfg(4, 2, BLOCK_CO=32, BLOCK_CI=32),
                     _cfg(4, 2, BLOCK_CO=64, BLOCK_CI=16), _cfg(8, 3, BLOCK_CO=128, BLOCK_CI=64)]


def conv_smem_bytes(config: triton.Config, block_l: int, elem_bytes: int) -> int:
    """Shared memory (upper bound) of a forward-conv config: per pipeline stage the three taps' W tiles
    (BLOCK_CO x BLOCK_CI) and x tiles (BLOCK_CI x BLOCK_L) in the operands' dtype."""
    m = config.kwargs
    tiles = 3 * (m["BLOCK_CO"] * m["BLOCK_CI"] + m["BLOCK_CI"] * block_l)
    return dot_smem_bytes(config.num_stages, tiles, elem_bytes)


def _conv_fits(config: triton.Config, named_args: dict, meta: dict) -> bool:
    """Prune: configs whose shared memory exceeds sm_90's 227 KB (fp32: 64x64 and 128x64 at 3 stages, 288 / 432
    KB) never compile to a launchable kernel there."""
    elem = named_args["x_ptr"].element_size()
    return conv_smem_bytes(config, meta["BLOCK_L"], elem) <= SMEM_LIMIT_BYTES


@tuned_autotune(_CONV_GPU_CONFIGS, _cfg(4, BLOCK_CO=16, BLOCK_CI=16), key=["Cin", "Cout", "L"], fits=_conv_fits)
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _conv1d_k3_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, pmean_ptr, pm2_ptr, Cin, Cout, L, N_LT, TUNE_KEY,
                      s_xb, s_xc, s_xl, s_wo, s_wi, s_wk, s_bias, s_ob, s_oc, s_ol,
                      HAS_BIAS: tl.constexpr, WRITE_STATS: tl.constexpr, DOT_F32: tl.constexpr,
                      PRECISION: tl.constexpr, VEC: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_CI: tl.constexpr,
                      BLOCK_L: tl.constexpr):
    """Grid (B * N_LT, co-tiles): program (b * N_LT + l-tile, co-tile) computes
    out[b, co, l] = bias[co] + sum_{ci,k} W[co, ci, k] x[b, ci, l + k - 1]. ``VEC`` divides L and the x / out
    channel and sample strides (host-checked): rewriting them as multiples of VEC lets Triton prove the row starts
    aligned, so the centre tap and the store vectorise even for L = 300."""
    L = vec_multiple(L, VEC)
    s_xb = vec_multiple(s_xb, VEC)
    s_xc = vec_multiple(s_xc, VEC)
    s_ob = vec_multiple(s_ob, VEC)
    s_oc = vec_multiple(s_oc, VEC)
    pid0 = tl.program_id(0)
    b = pid0 // N_LT
    pid_l = pid0 - b * N_LT
    pid_co = tl.program_id(1)
    co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    ls = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    rci = tl.arange(0, BLOCK_CI)
    co_m = co < Cout
    l_m = ls < L
    b64 = b.to(tl.int64)
    x_base = x_ptr + b64 * s_xb
    acc = tl.zeros((BLOCK_CO, BLOCK_L), dtype=tl.float32)
    for ci0 in range(0, Cin, BLOCK_CI):
        ci = ci0 + rci
        ci_m = ci < Cin
        for k in tl.static_range(3):
            w = tl.load(w_ptr + co[:, None] * s_wo + ci[None, :] * s_wi + k * s_wk,
                        mask=co_m[:, None] & ci_m[None, :], other=0.0)
            src = ls + (k - 1)
            xv = tl.load(x_base + ci[:, None] * s_xc + src[None, :] * s_xl,
                         mask=ci_m[:, None] & ((src >= 0) & (src < L))[None, :], other=0.0)
            if DOT_F32:
                w = w.to(tl.float32)
                xv = xv.to(tl.float32)
            acc = _mma(w, xv, acc, PRECISION)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + co * s_bias, mask=co_m, other=0.0).to(tl.float32)
        acc = acc + bias[:, None]
    out = acc.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + b64 * s_ob + co[:, None] * s_oc + ls[None, :] * s_ol, out,
             mask=co_m[:, None] & l_m[None, :])
    if WRITE_STATS:
        hv = out.to(tl.float32)
        lw = l_m.to(tl.float32)
        n_l = tl.sum(lw, 0)
        mean_c = tl.sum(hv * lw[None, :], 1) / n_l
        d = (hv - mean_c[:, None]) * lw[None, :]
        m2_c = tl.sum(d * d, 1)
        off = (b64 * Cout + co) * N_LT + pid_l
        tl.store(pmean_ptr + off, mean_c, mask=co_m)
        tl.store(pm2_ptr + off, m2_c, mask=co_m)


@triton.jit
def _gn_merge_partials_kernel(pmean_ptr, pm2_ptr, mean_ptr, rstd_ptr, C, L, G, CPG, N_LT, eps,
                              TILE_L: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (b, g): merge the CPG * N_LT per-(channel, l-tile) partials (count, mean, M2) of group g,
    stored contiguously at p[b, g*CPG:(g+1)*CPG, :], with mean = sum n_i mean_i / n and
    M2 = sum M2_i + n_i (mean_i - mean)^2 (two short passes over the partials)."""
    pid = tl.program_id(0)
    b = pid // G
    g = pid - b * G
    base = (b.to(tl.int64) * C + g * CPG) * N_LT
    total = CPG * N_LT
    r = tl.arange(0, BLOCK)
    acc_n = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_s = tl.zeros((BLOCK,), dtype=tl.float32)
    for j0 in range(0, total, BLOCK):
        j = j0 + r
        m = j < total
        t = j % N_LT
        cnt = tl.where(m, tl.minimum(L - t * TILE_L, TILE_L), 0).to(tl.float32)
        pm = tl.load(pmean_ptr + base + j, mask=m, other=0.0)
        acc_n += cnt
        acc_s += cnt * pm
    n = tl.sum(acc_n, 0)
    mean = tl.sum(acc_s, 0) / n
    acc_m2 = tl.zeros((BLOCK,), dtype=tl.float32)
    for j0 in range(0, total, BLOCK):
        j = j0 + r
        m = j < total
        t = j % N_LT
        cnt = tl.where(m, tl.minimum(L - t * TILE_L, TILE_L), 0).to(tl.float32)
        pm = tl.load(pmean_ptr + base + j, mask=m, other=0.0)
        p2 = tl.load(pm2_ptr + base + j, mask=m, other=0.0)
        d = pm - mean
        acc_m2 += tl.where(m, p2 + cnt * d * d, 0.0)
    m2 = tl.sum(acc_m2, 0)
    tl.store(mean_ptr + pid, mean)
    tl.store(rstd_ptr + pid, 1.0 / tl.sqrt(m2 / n + eps))


#: (BLOCK_CO, BLOCK_CI, BLOCK_L, warps, stages): the configs with no register spills at C 128 / L 300, C 128 / L 150
#: and C 256 / L 75 in fp32 and bf16 (offline sm_90 compile; 64x64x64 at 4 warps, 64x32x64 at 4 warps and 128x128
#: spilled at some of these shapes).
_WGRAD_GPU_CONFIGS = [_cfg(warps, stages, BLOCK_CO=bco, BLOCK_CI=bci, BLOCK_L=bl)
                      for bco, bci, bl, warps, stages in ((64, 64, 32, 4, 3), (64, 32, 64, 8, 3), (128, 64, 32, 8, 3),
                                                          (64, 64, 32, 4, 2))]


def wgrad_smem_bytes(config: triton.Config, elem_bytes: int) -> int:
    """Shared memory (upper bound) of a weight-gradient config: per stage a dy tile (BLOCK_CO x BLOCK_L) and one
    shifted x tile (BLOCK_L x BLOCK_CI)."""
    m = config.kwargs
    return dot_smem_bytes(config.num_stages, m["BLOCK_L"] * (m["BLOCK_CO"] + m["BLOCK_CI"]), elem_bytes)


def _wgrad_fits(config: triton.Config, named_args: dict, meta: dict) -> bool:
    return wgrad_smem_bytes(config, named_args["x_ptr"].element_size()) <= SMEM_LIMIT_BYTES


@tuned_autotune(_WGRAD_GPU_CONFIGS, _cfg(4, BLOCK_CO=16, BLOCK_CI=16, BLOCK_L=32), key=["Cin", "Cout", "L",
                                                                                        "B_PER_SPLIT"],
                fits=_wgrad_fits)
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _conv1d_k3_wgrad_kernel(dy_ptr, x_ptr, pdw_ptr, pdb_ptr, B, Cin, Cout, L, B_PER_SPLIT, TUNE_KEY,
                            s_db, s_dc, s_dl, s_xb, s_xc, s_xl,
                            DOT_F32: tl.constexpr, PRECISION: tl.constexpr, VEC: tl.constexpr,
                            BLOCK_CO: tl.constexpr, BLOCK_CI: tl.constexpr, BLOCK_L: tl.constexpr):
    """Grid (co-tiles * 3, ci-tiles, splits); program (3 * co-tile + k, ci-tile, split) computes the partial
    dW[split, co, ci, k] = sum over the split's batches and all l of dy[b, co, l] x[b, ci, l + k - 1] (tl.dot
    over l) for its one tap k, and the tap-0 programs of ci-tile 0 the partial dbias[split, co].

    One tap per program keeps a single (BLOCK_CO, BLOCK_CI) fp32 accumulator: three of them (one per tap) in one
    program spilled at 255 registers in fp32 (measured offline, bench/results/triton_offline_sm90.json)."""
    L = vec_multiple(L, VEC)
    s_db = vec_multiple(s_db, VEC)
    s_dc = vec_multiple(s_dc, VEC)
    s_xb = vec_multiple(s_xb, VEC)
    s_xc = vec_multiple(s_xc, VEC)
    pid0 = tl.program_id(0)
    pid_co = pid0 // 3
    k = pid0 - 3 * pid_co
    pid_ci = tl.program_id(1)
    split = tl.program_id(2)
    co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    ci = pid_ci * BLOCK_CI + tl.arange(0, BLOCK_CI)
    rl = tl.arange(0, BLOCK_L)
    co_m = co < Cout
    ci_m = ci < Cin
    acc = tl.zeros((BLOCK_CO, BLOCK_CI), dtype=tl.float32)
    accb = tl.zeros((BLOCK_CO,), dtype=tl.float32)
    b_lo = split * B_PER_SPLIT
    n_b = tl.minimum(B - b_lo, B_PER_SPLIT)
    dy_base = dy_ptr + b_lo.to(tl.int64) * s_db
    x_base = x_ptr + b_lo.to(tl.int64) * s_xb
    for _ in range(0, n_b):
        for l0 in range(0, L, BLOCK_L):
            ls = l0 + rl
            gy = tl.load(dy_base + co[:, None] * s_dc + ls[None, :] * s_dl, mask=co_m[:, None] & (ls < L)[None, :],
                         other=0.0)
            src = ls + (k - 1)
            xv = tl.load(x_base + ci[None, :] * s_xc + src[:, None] * s_xl,
                         mask=ci_m[None, :] & ((src >= 0) & (src < L))[:, None], other=0.0)
            if DOT_F32:
                gy = gy.to(tl.float32)
                xv = xv.to(tl.float32)
            acc = _mma(gy, xv, acc, PRECISION)
            accb += tl.sum(gy.to(tl.float32), 1)
        dy_base += s_db
        x_base += s_xb
    off = ((split.to(tl.int64) * Cout + co[:, None]) * Cin + ci[None, :]) * 3 + k
    tl.store(pdw_ptr + off, acc, mask=co_m[:, None] & ci_m[None, :])
    tl.store(pdb_ptr + split * Cout + co, accb, mask=co_m & ((co * 0 + pid_ci + k) == 0))  # block mask


# ------------------------------------------------------------------------------------------ Python wrappers
def _check_conv_args(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[1] != x.shape[1] or weight.shape[2] != 3:
        raise ValueError(f"expected x (B, Cin, L) and weight (Cout, Cin, 3); got x {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)}")
    if x.numel() == 0 or weight.numel() == 0:
        raise ValueError("x and weight must be non-empty")
    check_float(x=x, weight=weight, bias=bias)
    if weight.dtype != x.dtype:
        raise TypeError(f"weight dtype {weight.dtype} must match x dtype {x.dtype} (as in F.conv1d)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    check_launchable(x, weight, bias)


def conv1d_k3_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, precision: str = "tf32",
                      with_stats: bool = False):
    """``h = conv1d(x, weight, bias, padding=1)`` (no autograd), h (B, Cout, L) contiguous in x's dtype.

    With ``with_stats``, also the GN partials ``(pmean, pm2, tile_l)``: (B, Cout, n_ltiles) fp32 tile means and
    M2 of h along L (tile ``j`` covers ``min(tile_l, L - j * tile_l)`` positions); else ``None``."""
    _check_conv_args(x, weight, bias)
    B, Cin, L = x.shape
    Cout = weight.shape[0]
    out = new_buffer((B, Cout, L), x.dtype, x.device)
    block_l = conv_block_l(L)
    n_lt = cdiv(L, block_l)
    if with_stats:
        pmean = new_buffer((B, Cout, n_lt), torch.float32, x.device)
        pm2 = new_buffer((B, Cout, n_lt), torch.float32, x.device)
    else:
        pmean = pm2 = out

    weight = _ci_contiguous(weight)
    x_strides = _sample_strides(x)
    out_strides = _sample_strides(out)
    _conv1d_k3_kernel[conv_grid(B, n_lt, Cout)](
        x, weight, x if bias is None else bias, out, pmean, pm2, Cin, Cout, L, n_lt, tune_key(B),
        *x_strides, *weight.stride(), 0 if bias is None else bias.stride(0), *out_strides,
        HAS_BIAS=bias is not None, WRITE_STATS=with_stats, **_dot_flags(x.dtype, precision),
        VEC=hint_divisor(L, x_strides[0], x_strides[1], out_strides[0], out_strides[1]), BLOCK_L=block_l)
    return out, ((pmean, pm2, block_l) if with_stats else None)


def _ci_contiguous(weight: Tensor) -> Tensor:
    """``weight`` (Cout, Cin, 3) as a view with Cin contiguous (storage (3, Cout, Cin)), so the kernel's W tiles are
    16-byte loads (K-major, as tf32 MMAs need); a copy of the small weight unless it is already laid out so."""
    if weight.stride(1) == 1 or weight.shape[1] == 1:
        return weight
    return weight.permute(2, 0, 1).contiguous().permute(1, 2, 0)


def _sample_strides(t: Tensor) -> tuple[int, int, int]:
    """``t.stride()`` with the sample stride 0 when B == 1 (so it never limits the alignment hint)."""
    sb, sc, sl = t.stride()
    return (0 if t.shape[0] == 1 else sb), sc, sl


def conv_grid(B: int, n_ltiles: int, Cout: int):
    """Launch grid of the forward conv: ``(B * n_ltiles, co-tiles)``, batch folded into axis 0 (limit 2**31 - 1);
    a callable of the autotuned meta-parameters (BLOCK_CO), as ``kernel[grid]`` expects."""
    def grid(meta):
        return fold_grid(B, n_ltiles, cdiv(Cout, meta["BLOCK_CO"]))
    return grid


def merge_conv_stats(pmean: Tensor, pm2: Tensor, tile_l: int, L: int, num_groups: int,
                     eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """(B, G) fp32 ``mean``, ``rstd`` of h from the conv epilogue's per-(b, channel, l-tile) partials."""
    B, C, n_lt = pmean.shape
    G = num_groups
    mean = new_buffer((B, G), torch.float32, pmean.device)
    rstd = new_buffer((B, G), torch.float32, pmean.device)
    block = min(256, max(16, next_power_of_2((C // G) * n_lt)))
    _gn_merge_partials_kernel[(B * G,)](pmean, pm2, mean, rstd, C, L, G, C // G, n_lt, float(eps),
                                        TILE_L=tile_l, BLOCK=block, num_warps=1 if INTERPRETED_AT_IMPORT else 4)
    return mean, rstd


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 2  # interpreter: small, but still splits a batch of 3 into several partials (tests determinism)
    return torch.cuda.get_device_properties(device).multi_processor_count


def conv1d_k3_wgrad(dy: Tensor, x: Tensor, precision: str = "tf32") -> tuple[Tensor, Tensor]:
    """``(dW, dbias)`` of ``conv1d(x, W, padding=1)`` given dy = dL/dh (B, Cout, L): fp32 (Cout, Cin, 3) and
    (Cout,). Deterministic: per-batch-split partials summed in a fixed order."""
    check_float(dy=dy, x=x)
    check_launchable(dy, x)
    B, Cin, L = x.shape
    Cout = dy.shape[1]
    if dy.dim() != 3 or dy.shape[0] != B or dy.shape[2] != L:
        raise ValueError(f"dy {tuple(dy.shape)} does not match x {tuple(x.shape)}")
    if dy.dtype != x.dtype:
        dy = dy.to(x.dtype)
    # batch split: enough programs to fill the device (tiles counted at a nominal 64 x 64, three taps each), at most
    # one split per sample; axis 2 stays <= 2 * SMs
    tiles = 3 * cdiv(Cout, 64) * cdiv(Cin, 64)
    split = max(1, min(B, cdiv(2 * _num_sms(x.device), tiles)))
    per_split = cdiv(B, split)
    split = cdiv(B, per_split)
    pdw = new_buffer((split, Cout, Cin, 3), torch.float32, x.device)
    pdb = new_buffer((split, Cout), torch.float32, x.device)

    dy_strides = _sample_strides(dy)
    x_strides = _sample_strides(x)

    def grid(meta):
        return (3 * cdiv(Cout, meta["BLOCK_CO"]), cdiv(Cin, meta["BLOCK_CI"]), split)

    _conv1d_k3_wgrad_kernel[grid](dy, x, pdw, pdb, B, Cin, Cout, L, per_split, tune_key(B), *dy_strides, *x_strides,
                                  **_dot_flags(x.dtype, precision),
                                  VEC=hint_divisor(L, dy_strides[0], dy_strides[1], x_strides[0], x_strides[1]))
    return pdw.sum(dim=0), pdb.sum(dim=0)


def _transposed_weight(weight: Tensor) -> Tensor:
    """W'[ci, co, k] = W[co, ci, 2 - k]: the weight of the transposed (input-gradient) convolution, stored tap-major
    with its input channels (co) contiguous, as the kernel reads it (one copy)."""
    return weight.permute(2, 1, 0).flip(0).contiguous().permute(1, 2, 0)


def conv1d_k3_backward(dh: Tensor, x: Tensor, weight: Tensor, need_dx: bool, need_dw: bool, need_db: bool,
                       precision: str):
    """``(dx, dW, dbias)`` (None where not needed) of h = conv1d(x, W, bias, padding=1)."""
    dx = dw = db = None
    if need_dx:
        dx = _conv_op(dh, _transposed_weight(weight), None, precision)
    if need_dw or need_db:
        dw, db = _wgrad_op(dh, x, precision)
        dw = dw.to(weight.dtype) if need_dw else None
        db = db if need_db else None
    return dx, dw, db


def conv_block_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], gamma: Optional[Tensor],
                       beta: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor], num_groups: int,
                       eps: float = 1e-5, precision: str = "tf32"):
    """Forward without autograd: ``(y, h, mean, rstd)``: conv with GN partials, merge, apply."""
    _check_conv_args(x, weight, bias)
    B, Cin, L = x.shape
    Cout = weight.shape[0]
    check_film_shapes((B, Cout, L), gamma, beta, scale, shift, num_groups)
    check_float(gamma=gamma, beta=beta, scale=scale, shift=shift)
    check_launchable(x, gamma, beta, scale, shift)
    h, (pmean, pm2, tile_l) = conv1d_k3_forward(x, weight, bias, precision, with_stats=True)
    mean, rstd = merge_conv_stats(pmean, pm2, tile_l, L, num_groups, eps)
    y = gn_film_silu_apply(h, mean, rstd, gamma, beta, scale, shift, num_groups)
    return y, h, mean, rstd


def _conv_block_grads(needs, dy, x, weight, bias, gamma, beta, scale, shift, h, mean, rstd, num_groups, precision):
    dh, dgamma, dbeta, dscale, dshift = gn_film_silu_backward(dy, h, mean, rstd, gamma, beta, scale, shift,
                                                              num_groups)
    dx, dw, db = conv1d_k3_backward(dh, x, weight, needs[0], needs[1], needs[2] and bias is not None, precision)
    if db is not None:
        db = db.to(bias.dtype)
    return dx, dw, db, dgamma, dbeta, dscale, dshift


# ---------------------------------------------------------------------------- torch.library ops + autograd
def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.flowfm, name)
        return True
    except (AttributeError, RuntimeError):
        return False


if not _has_op("conv_block_fwd"):  # a re-import (importlib.reload) keeps the registered ops
    @torch.library.custom_op("flowfm::conv1d_k3", mutates_args=())
    def _conv1d_k3_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], precision: str) -> Tensor:
        return conv1d_k3_forward(x, weight, bias, precision)[0]

    @_conv1d_k3_op.register_fake
    def _conv1d_k3_fake(x, weight, bias, precision):
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2]))

    @torch.library.custom_op("flowfm::conv1d_k3_wgrad", mutates_args=())
    def _wgrad_op_impl(dy: Tensor, x: Tensor, precision: str) -> tuple[Tensor, Tensor]:
        return conv1d_k3_wgrad(dy, x, precision)

    @_wgrad_op_impl.register_fake
    def _wgrad_fake(dy, x, precision):
        Cout, Cin = dy.shape[1], x.shape[1]
        return (x.new_empty((Cout, Cin, 3), dtype=torch.float32), x.new_empty((Cout,), dtype=torch.float32))

    def _conv1d_setup(ctx, inputs, output):
        x, weight, bias, precision = inputs
        ctx.save_for_backward(x, weight)
        ctx.precision = precision
        ctx.has_bias = bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype

    def _conv1d_backward(ctx, dh):
        x, weight = ctx.saved_tensors
        nd = ctx.needs_input_grad
        dx, dw, db = conv1d_k3_backward(dh, x, weight, nd[0], nd[1], nd[2] and ctx.has_bias, ctx.precision)
        return dx, dw, (None if db is None else db.to(ctx.bias_dtype)), None

    torch.library.register_autograd("flowfm::conv1d_k3", _conv1d_backward, setup_context=_conv1d_setup)

    @torch.library.custom_op("flowfm::conv_block_fwd", mutates_args=())
    def _conv_block_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], gamma: Optional[Tensor],
                       beta: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor], num_groups: int,
                       eps: float, precision: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return conv_block_forward(x, weight, bias, gamma, beta, scale, shift, num_groups, eps, precision)

    @_conv_block_op.register_fake
    def _conv_block_fake(x, weight, bias, gamma, beta, scale, shift, num_groups, eps, precision):
        B, L, Cout = x.shape[0], x.shape[2], weight.shape[0]
        stats = x.new_empty((B, num_groups), dtype=torch.float32)
        return (x.new_empty((B, Cout, L)), x.new_empty((B, Cout, L)), stats, torch.empty_like(stats))

    def _conv_block_setup(ctx, inputs, output):
        x, weight, bias, gamma, beta, scale, shift, num_groups, eps, precision = inputs
        _, h, mean, rstd = output
        ctx.save_for_backward(x, weight, bias, gamma, beta, scale, shift, h, mean, rstd)
        ctx.num_groups, ctx.precision = num_groups, precision
        ctx.mark_non_differentiable(h, mean, rstd)

    def _conv_block_backward(ctx, dy, _dh, _dmean, _drstd):
        x, weight, bias, gamma, beta, scale, shift, h, mean, rstd = ctx.saved_tensors
        grads = _conv_block_grads(ctx.needs_input_grad, dy, x, weight, bias, gamma, beta, scale, shift, h, mean,
                                  rstd, ctx.num_groups, ctx.precision)
        return grads + (None, None, None)

    torch.library.register_autograd("flowfm::conv_block_fwd", _conv_block_backward, setup_context=_conv_block_setup)


def _conv_op(x, weight, bias, precision):
    return torch.ops.flowfm.conv1d_k3(x, weight, bias, precision)


def _wgrad_op(dy, x, precision):
    return torch.ops.flowfm.conv1d_k3_wgrad(dy, x, precision)


def conv1d_k3_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     precision: Optional[str] = None) -> Tensor:
    """``F.conv1d(x, weight, bias, padding=1)`` for k=3 as a Triton implicit GEMM; differentiable."""
    _check_conv_args(x, weight, bias)
    precision = dot_precision() if precision is None else precision
    return torch.ops.flowfm.conv1d_k3(x, weight, bias, precision)


def conv_block_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor], gamma: Optional[Tensor],
                      beta: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor], num_groups: int,
                      eps: float = 1e-5, precision: Optional[str] = None) -> Tensor:
    """Triton backend of :func:`flowfm_kernels.conv_block` (same signature and values as
    :func:`~flowfm_kernels.conv_block.reference.conv_block_ref`); differentiable w.r.t. x, weight, bias, gamma, beta,
    scale, shift. ``precision`` (fp32 ``tl.dot``): None reads ``FLOWFM_TRITON_DOT_PRECISION`` (default "tf32")."""
    _check_conv_args(x, weight, bias)
    precision = dot_precision() if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    args = (x, weight, bias, gamma, beta, scale, shift, int(num_groups), float(eps), precision)
    return torch.ops.flowfm.conv_block_fwd(*args)[0]


# ------------------------------------------------------------------------------------------------ cost model
def conv_block_cost(B: int, Cin: int, Cout: int, L: int, dtype: torch.dtype = torch.float32,
                    num_groups: int = 8) -> dict:
    """Bytes moved and FLOPs of one forward (``bytes``, ``flops``) and one backward (``backward_*``) call.

    Forward FLOPs: conv 2 * B * Cout * L * Cin * 3 (+ bias B * Cout * L) + GN/FiLM/SiLU 11 per output element.
    Forward bytes (this implementation): read x and W, write h, GN partials (B * Cout * ceil(L / 64) * 2 fp32, written
    and read once), read h, write y; ``min_bytes`` is the compulsory traffic (x, W, bias/params, y).
    Backward FLOPs: dx and dW are each another 2 * B * Cout * L * Cin * 3 GEMM, + GN backward 25 per element.
    Backward bytes: read dy, h (GN backward, fused path), write dh; read dh + W', write dx; read dh + x, write dW
    (fp32 split partials, ignored) -> 3 h-sized + 2 x-sized + reads of dh twice."""
    e = dtype_bytes(dtype)
    x_b = B * Cin * L * e
    h_b = B * Cout * L * e
    w_b = 3 * Cout * Cin * e
    params = (Cout + 2 * Cout + 2 * B * Cout) * e
    partials = 2 * 2 * B * Cout * cdiv(L, 64) * 4
    stats = 2 * B * num_groups * 4
    conv_flops = 2 * B * Cout * L * Cin * 3
    fwd_bytes = x_b + w_b + 3 * h_b + params + partials + stats
    bwd_bytes = (3 * h_b + params + stats) + (h_b + w_b + x_b) + (h_b + x_b + w_b)
    return dict(bytes=fwd_bytes, flops=conv_flops + B * Cout * L * 12, min_bytes=x_b + w_b + params + h_b,
                backward_bytes=bwd_bytes, backward_flops=2 * conv_flops + 25 * B * Cout * L)


__all__ = ["conv_block_triton", "conv_block_cost", "conv1d_k3_triton", "conv1d_k3_forward", "conv1d_k3_wgrad",
           "conv1d_k3_backward", "merge_conv_stats", "conv_block_forward", "dot_precision",
           "PRECISIONS"]
