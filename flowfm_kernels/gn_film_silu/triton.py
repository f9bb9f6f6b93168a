"""Triton kernels for GroupNorm + FiLM + SiLU, the memory-bound tail of the velocity network's conv block.

Maths (h: (B, C, L), G groups of CPG = C / G channels, N = CPG * L elements per (sample, group))::

    mean[b, g] = 1/N sum_{c in g, l} h[b, c, l]
    var[b, g]  = 1/N sum_{c in g, l} (h[b, c, l] - mean[b, g])^2          (biased, like nn.GroupNorm)
    rstd       = 1 / sqrt(var + eps)
    xhat       = (h - mean) * rstd
    a          = xhat * gamma[c] + beta[c]                                 gamma, beta: (C,) or None (1, 0)
    z          = a * (1 + scale[b, c]) + shift[b, c]                       scale, shift: (B, C) or None (0, 0)
    y          = SiLU(z) = z * sigmoid(z)                                  y: (B, C, L), dtype of h

Backward (dz = dy * sigmoid(z) * (1 + z * (1 - sigmoid(z))), S1 = sum_l dz, S2 = sum_l dz * xhat, per (b, c))::

    dshift[b, c] = S1                       dscale[b, c] = gamma * S2 + beta * S1
    dgamma[c]    = sum_b (1 + scale) * S2   dbeta[c]     = sum_b (1 + scale) * S1
    g            = dz * (1 + scale) * gamma                  (dL/dxhat)
    dh           = rstd * (g - mean_grp(g) - xhat * mean_grp(g * xhat))

Statistics are numerically stable: every tile's (count, mean, M2) is computed two-pass in registers and tiles are
combined with Chan's parallel update, never as E[x^2] - E[x]^2, so inputs with mean 1e3 and std 1 keep fp32
accuracy. Everything is computed in fp32 (fp16 / bf16 / fp64 inputs are cast on load) and stored in h's dtype.

Kernels and launch plan (one "read" below is one pass over a (B, C, L) tensor):

``fused`` path (next_pow2(CPG) * next_pow2(L) <= ``FUSED_MAX_ELEMS``, e.g. CPG 16 at L 300): one program per
    (b, g) holds the whole group in registers. Forward: 1 read of h + 1 write of y (+ mean/rstd). Backward:
    1 read of h and dy + 1 write of dh (+ S1, S2 per (b, c)).
``tiled`` path (larger groups): forward = stats kernel (1 read, per-(b, g) Chan merge over tiles) + apply kernel
    (1 read + 1 write); backward = reduction kernel writing per-(b, c, l-tile) partials of S1, S2 (summed by
    ``torch.sum`` in a fixed order) + dh kernel (1 read of h and dy, 1 write).

Memory access: the forward kernels treat each group as one flat span of CPG * L elements of the sample's row
(the apply and dh kernels tile the whole row, like the loss and ODE kernels), with the divisibility hint VEC of
:mod:`flowfm_kernels.triton_support`, so fp32 and bf16 loads are 16-byte vectors at the production lengths
(offline PTX check, bench/results/triton_offline_sm90.md). The backward reductions need per-channel sums and keep
(channel, l) tiles; L and the row strides are hinted (L = 300: 4-element vectors). Non-uniformly strided operands
take the general indexing path (scalar loads). Grids put the batch on axis 0 (``fold_grid``): B = 100,000 launches.

In place: ``out=h`` (exactly h) is supported by :func:`gn_film_silu_forward` / :func:`gn_film_silu_apply`; the
autotuner restores ``out`` between its timing runs (``restore_value``), so the first call per shape is correct too.

Determinism: no float atomics; every partial has its own slot and is reduced in a fixed order, so with the *same
autotune config* results are bitwise identical run to run. The apply and dh kernels are elementwise (their results
do not depend on the config); the fused kernels' and the stats kernel's reduction trees depend on num_warps /
BLOCK, which the autotuner picks by timing, so across processes bits can differ unless the configs are pinned:
``FLOWFM_DETERMINISTIC=1`` or ``torch.use_deterministic_algorithms(True)`` keeps the first fitting config per shape
bucket (:func:`~flowfm_kernels.triton_support.select_configs`), bitwise reproducible across processes on the same
GPU model and Triton version.

Autotune keys: shape, dtypes and ``TUNE_KEY`` (batch bucket + pinned flag, :func:`~flowfm_kernels.triton_support.
tune_key`); pruned: 4-warp fused forward / backward above 4,096 elements per group (255-register cap), tiles
longer than the span. Tuning results are cached on disk across processes where Triton supports it.

Bytes / FLOPs per call (:func:`gn_film_silu_cost`; e = element size of h): forward 2 * B*C*L * e bytes (fused; tiled
3 * B*C*L * e) and ~11 FLOPs per element; backward 3 * B*C*L * e bytes (fused; tiled 5 * B*C*L * e) and ~25 FLOPs
per element, plus O(B * C) for the parameters and statistics.

Internal helpers reused by :mod:`flowfm_kernels.conv_block.triton`: :func:`group_stats`, :func:`gn_film_silu_apply`,
:func:`gn_film_silu_backward`.

Autograd / torch.compile: the forward and backward are ``torch.library.custom_op`` s (``flowfm::gn_film_silu_fwd``,
``flowfm::gn_film_silu_bwd``) with fake (meta) implementations and ``register_autograd``, so ``torch.compile`` traces
around them as opaque calls.

Environment: ``TRITON_INTERPRET=1`` (before import) runs the kernels on CPU tensors through the Triton interpreter;
``FLOWFM_DEBUG_NAN_POISON=1`` fills every buffer these wrappers allocate with NaN before the kernels run (tests:
an element a kernel forgets to write shows up as NaN).
"""
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from flowfm_kernels.gn_film_silu.reference import check_shapes
from flowfm_kernels.triton_support import (INTERPRETED_AT_IMPORT, cdiv, check_float, check_launchable,
                                           check_output, dtype_bytes, fold_grid, hint_divisor, next_power_of_2,
                                           pow2_divisor, row_layouts, row_tile, sample_offsets, stride_args,
                                           tune_key, tuned_autotune, vec_multiple)

#: Largest next_pow2(CPG) * next_pow2(L) tile a single program holds in registers (fused one-pass path).
FUSED_MAX_ELEMS = 8192

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------------------ small helpers
def _poison_enabled() -> bool:
    return os.environ.get("FLOWFM_DEBUG_NAN_POISON", "0") not in ("", "0")


def new_buffer(shape, dtype: torch.dtype, device) -> Tensor:
    """``torch.empty``, or a NaN-filled tensor when ``FLOWFM_DEBUG_NAN_POISON=1`` (debug: catches unwritten
    elements)."""
    if _poison_enabled():
        return torch.full(tuple(shape), float("nan"), dtype=dtype, device=device)
    return torch.empty(tuple(shape), dtype=dtype, device=device)


def _cfg(num_warps: int = 4, num_stages: Optional[int] = None, **meta) -> triton.Config:
    if num_stages is None:
        return triton.Config(meta, num_warps=num_warps)
    return triton.Config(meta, num_warps=num_warps, num_stages=num_stages)


def _stride(t: Optional[Tensor], dim: int) -> int:
    return 0 if t is None else t.stride(dim)


def check_gn_args(h: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor], scale: Optional[Tensor],
                  shift: Optional[Tensor], num_groups: int) -> None:
    """Shapes, dtypes and devices of the GN + FiLM + SiLU operands (raises ValueError / TypeError)."""
    check_film_shapes(tuple(h.shape), gamma, beta, scale, shift, num_groups)
    check_float(h=h, gamma=gamma, beta=beta, scale=scale, shift=shift)
    check_launchable(h, gamma, beta, scale, shift)


def check_film_shapes(shape: tuple, gamma: Optional[Tensor], beta: Optional[Tensor], scale: Optional[Tensor],
                      shift: Optional[Tensor], num_groups: int) -> None:
    """:func:`~flowfm_kernels.gn_film_silu.reference.check_shapes` for an activation of shape (B, C, L), which the
    Triton kernels also need non-empty."""
    check_shapes("gn_film_silu_triton", shape, gamma, beta, scale, shift, num_groups)
    if 0 in shape:
        raise ValueError(f"gn_film_silu_triton: h must be non-empty, got shape {tuple(shape)}")


def _dummy(t: Optional[Tensor], like: Tensor) -> Tensor:
    """A valid pointer argument for an absent optional operand (never dereferenced: its HAS_* flag is False)."""
    return like if t is None else t


def _param_args(gamma, beta, scale, shift, like):
    """Pointer + stride arguments of the four FiLM operands, in the order the kernels take them."""
    return ((_dummy(gamma, like), _dummy(beta, like), _dummy(scale, like), _dummy(shift, like)),
            (_stride(gamma, 0), _stride(beta, 0), _stride(scale, 0), _stride(scale, 1), _stride(shift, 0),
             _stride(shift, 1)),
            dict(HAS_GAMMA=gamma is not None, HAS_BETA=beta is not None, HAS_SCALE=scale is not None,
                 HAS_SHIFT=shift is not None))


def use_fused(num_channels_per_group: int, L: int) -> bool:
    """Whether one program can hold a whole (b, g) group (the one-read fused path)."""
    block_c, block_l = _fused_blocks(num_channels_per_group, L)
    return block_c * block_l <= FUSED_MAX_ELEMS


def _fused_blocks(cpg: int, L: int) -> tuple[int, int]:
    return max(2, next_power_of_2(cpg)), max(16, next_power_of_2(L))


def _check_stats(mean: Tensor, rstd: Tensor, B: int, G: int) -> None:
    for name, t in (("mean", mean), ("rstd", rstd)):
        if tuple(t.shape) != (B, G) or t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous float32 ({B}, {G}) tensor, got {tuple(t.shape)} "
                             f"{t.dtype}")


# --------------------------------------------------------------------------------------------- jit helpers
@triton.jit
def _load_film(b, c, cmask, gamma_ptr, beta_ptr, scale_ptr, shift_ptr, s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
               HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
               HAS_SHIFT: tl.constexpr):
    """Per-channel (gamma, beta, 1 + scale, shift) of sample ``b`` for channels ``c`` (fp32 blocks)."""
    zero = c.to(tl.float32) * 0.0
    if HAS_GAMMA:
        gamma = tl.load(gamma_ptr + c * s_gm, mask=cmask, other=1.0).to(tl.float32)
    else:
        gamma = zero + 1.0
    if HAS_BETA:
        beta = tl.load(beta_ptr + c * s_bt, mask=cmask, other=0.0).to(tl.float32)
    else:
        beta = zero
    if HAS_SCALE:
        one_s = 1.0 + tl.load(scale_ptr + b * s_sb + c * s_sc, mask=cmask, other=0.0).to(tl.float32)
    else:
        one_s = zero + 1.0
    if HAS_SHIFT:
        shift = tl.load(shift_ptr + b * s_tb + c * s_tc, mask=cmask, other=0.0).to(tl.float32)
    else:
        shift = zero
    return gamma, beta, one_s, shift


@triton.jit
def _sigmoid(z):
    # exp argument clamped at 80 (sigmoid < 2e-35 there): no inf in masked lanes or for very negative z
    return 1.0 / (1.0 + tl.exp(tl.minimum(-z, 80.0)))


@triton.jit
def _silu(z):
    return z * _sigmoid(z)


@triton.jit
def _silu_grad(z):
    """d SiLU(z) / dz = sigmoid(z) * (1 + z * (1 - sigmoid(z)))."""
    sig = _sigmoid(z)
    return sig * (1.0 + z * (1.0 - sig))


# ------------------------------------------------------------------------------------------------ kernels
# Group spans: with every operand's rows uniformly strided (FLAT, the contiguous case), the CPG * L elements of
# group g of sample b are one span n in [g * NG, (g + 1) * NG) of the sample's row (n = c * L + l); the span kernels
# load it as one 1-D block with the divisibility hint VEC (row_tile / sample_offsets, as the loss and ODE kernels
# do), so loads are 16-byte vectors at every production length (fp32 VEC 4, bf16 VEC 8), and per-element channels
# c = n // L gather the (cached) FiLM parameters. The per-channel reductions of the backward keep (channel, l)
# tiles, with L and the channel strides hinted by VEC.

def _fused_bwd_fits(config: triton.Config, named_args: dict, meta: dict) -> bool:
    """Prune: the fused backward at 4 warps hits the 255-register cap above 4,096 elements per group (measured
    offline, bench/results/triton_offline_sm90.json): keep 4 warps for groups up to 4,096 elements only."""
    return config.num_warps > 4 or meta["BLOCK_C"] * meta["BLOCK_L"] <= 4096


def _fused_fwd_fits(config: triton.Config, named_args: dict, meta: dict) -> bool:
    """Prune: the fused forward at 4 warps spills at 8,192-element groups (255 registers; measured offline): keep 4
    warps for spans up to 4,096 elements."""
    return config.num_warps > 4 or meta["BLOCK"] <= 4096


def _span_fits(config: triton.Config, named_args: dict, meta: dict) -> bool:
    """Prune span tiles longer than the span needs (at least the smallest config is kept)."""
    return config.kwargs["BLOCK"] <= max(1024, next_power_of_2(int(named_args["NG"])))


def _row_fits(config: triton.Config, named_args: dict, meta: dict) -> bool:
    return config.kwargs["BLOCK"] <= max(512, next_power_of_2(int(named_args["N"])))


_SPAN_CONFIGS = [_cfg(4, BLOCK=1024), _cfg(4, BLOCK=2048), _cfg(8, BLOCK=2048), _cfg(8, BLOCK=4096)]
_ROW_CONFIGS = [_cfg(4, BLOCK=1024), _cfg(4, BLOCK=512), _cfg(4, BLOCK=2048), _cfg(8, BLOCK=2048),
                _cfg(8, BLOCK=4096)]


@tuned_autotune([_cfg(8), _cfg(4), _cfg(16)], _cfg(4), key=["CPG", "L"], fits=_fused_fwd_fits,
                restore_value=["y_ptr"])
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _gn_fused_fwd_kernel(h_ptr, y_ptr, mean_ptr, rstd_ptr, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                         L, G, CPG, NG, TUNE_KEY, s_hb, s_h1, s_h2, s_yb, s_y1, s_y2,
                         s_gm, s_bt, s_sb, s_sc, s_tb, s_tc, eps,
                         HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
                         HAS_SHIFT: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (b, g): the group's NG = CPG * L elements as one span in registers; two-pass statistics;
    one read, one write. y may be h itself (the tuner restores y between its timing runs)."""
    NG = vec_multiple(NG, VEC)
    pid = tl.program_id(0)
    b = pid // G
    g = pid - b * G
    r = tl.arange(0, BLOCK)
    m = r < NG
    n = g * NG + r
    b64 = b.to(tl.int64)
    x = tl.load(h_ptr + sample_offsets(b64, n, L, s_hb, s_h1, s_h2, FLAT, VEC), mask=m, other=0.0).to(tl.float32)
    cnt = tl.sum(m.to(tl.float32), 0)
    mean = tl.sum(x, 0) / cnt
    d = tl.where(m, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, 0) / cnt + eps)
    c = n // L
    gamma, beta, one_s, shift = _load_film(b64, c, m, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                                           s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                                           HAS_GAMMA, HAS_BETA, HAS_SCALE, HAS_SHIFT)
    y = _silu(d * (rstd * gamma * one_s) + (beta * one_s + shift))
    tl.store(y_ptr + sample_offsets(b64, n, L, s_yb, s_y1, s_y2, FLAT, VEC), y.to(y_ptr.dtype.element_ty), mask=m)
    tl.store(mean_ptr + pid, mean)
    tl.store(rstd_ptr + pid, rstd)


@tuned_autotune(_SPAN_CONFIGS, _cfg(4, BLOCK=256), key=["NG"], fits=_span_fits)
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _gn_stats_kernel(h_ptr, mean_ptr, rstd_ptr, L, G, NG, TUNE_KEY, s_hb, s_h1, s_h2, eps,
                     FLAT: tl.constexpr, VEC: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (b, g): the group span in BLOCK-element tiles, each two-pass in registers, merged with Chan's
    update (n, mean, M2) <- (n_a + n_b, mean_a + delta n_b / n, M2_a + M2_b + delta^2 n_a n_b / n)."""
    NG = vec_multiple(NG, VEC)
    pid = tl.program_id(0)
    b = pid // G
    g = pid - b * G
    b64 = b.to(tl.int64)
    r = tl.arange(0, BLOCK)
    n_a = 0.0
    mean_a = 0.0
    m2_a = 0.0
    for j0 in range(0, NG, BLOCK):
        j = j0 + r
        m = j < NG
        x = tl.load(h_ptr + sample_offsets(b64, g * NG + j, L, s_hb, s_h1, s_h2, FLAT, VEC), mask=m,
                    other=0.0).to(tl.float32)
        n_b = tl.sum(m.to(tl.float32), 0)
        mean_b = tl.sum(x, 0) / n_b
        d = tl.where(m, x - mean_b, 0.0)
        m2_b = tl.sum(d * d, 0)
        n_ab = n_a + n_b
        delta = mean_b - mean_a
        mean_a = mean_a + delta * (n_b / n_ab)
        m2_a = m2_a + m2_b + delta * delta * (n_a * n_b / n_ab)
        n_a = n_ab
    tl.store(mean_ptr + pid, mean_a)
    tl.store(rstd_ptr + pid, 1.0 / tl.sqrt(m2_a / n_a + eps))


@tuned_autotune(_ROW_CONFIGS, _cfg(4, BLOCK=256), key=["N", "L"], fits=_row_fits, restore_value=["y_ptr"])
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _gn_apply_kernel(h_ptr, y_ptr, mean_ptr, rstd_ptr, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                     N, L, G, CPG, TUNE_KEY, s_hb, s_h1, s_h2, s_yb, s_y1, s_y2,
                     s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                     HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
                     HAS_SHIFT: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr, BLOCK: tl.constexpr):
    """1-D grid of B * ceil(N / BLOCK) programs over rows of N = C * L elements (row_tile):
    y = SiLU((h - mean) * rstd * gamma * (1 + s) + beta * (1 + s) + shift), channel c = n // L, group c // CPG.
    Elementwise (no reduction): the result does not depend on the config. y may be h itself."""
    b64, n, m, N = row_tile(N, BLOCK, VEC)
    c = n // L
    grp = c // CPG
    mean = tl.load(mean_ptr + b64 * G + grp, mask=m, other=0.0)
    rstd = tl.load(rstd_ptr + b64 * G + grp, mask=m, other=1.0)
    gamma, beta, one_s, shift = _load_film(b64, c, m, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                                           s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                                           HAS_GAMMA, HAS_BETA, HAS_SCALE, HAS_SHIFT)
    x = tl.load(h_ptr + sample_offsets(b64, n, L, s_hb, s_h1, s_h2, FLAT, VEC), mask=m, other=0.0).to(tl.float32)
    y = _silu((x - mean) * (rstd * gamma * one_s) + (beta * one_s + shift))
    tl.store(y_ptr + sample_offsets(b64, n, L, s_yb, s_y1, s_y2, FLAT, VEC), y.to(y_ptr.dtype.element_ty), mask=m)


@tuned_autotune([_cfg(8), _cfg(4), _cfg(16)], _cfg(4), key=["CPG", "L"], fits=_fused_bwd_fits)
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _gn_fused_bwd_kernel(dy_ptr, h_ptr, mean_ptr, rstd_ptr, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                         dh_ptr, s1_ptr, s2_ptr,
                         C, L, G, CPG, TUNE_KEY, s_db, s_dc, s_dl, s_hb, s_hc, s_hl, s_ob, s_oc, s_ol,
                         s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                         HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
                         HAS_SHIFT: tl.constexpr, VEC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """One program per (b, g): dz, S1/S2 per channel, the group means of g and g * xhat, and dh, in one pass.
    ``VEC`` divides L and the channel / sample strides (host-checked), so rows load as vectors."""
    L = vec_multiple(L, VEC)
    s_db = vec_multiple(s_db, VEC)
    s_dc = vec_multiple(s_dc, VEC)
    s_hb = vec_multiple(s_hb, VEC)
    s_hc = vec_multiple(s_hc, VEC)
    s_ob = vec_multiple(s_ob, VEC)
    s_oc = vec_multiple(s_oc, VEC)
    pid = tl.program_id(0)
    b = pid // G
    g = pid - b * G
    rc = tl.arange(0, BLOCK_C)
    rl = tl.arange(0, BLOCK_L)
    cmask = rc < CPG
    m = cmask[:, None] & (rl < L)[None, :]
    c = g * CPG + rc
    b64 = b.to(tl.int64)
    x = tl.load(h_ptr + b64 * s_hb + c[:, None] * s_hc + rl[None, :] * s_hl, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + b64 * s_db + c[:, None] * s_dc + rl[None, :] * s_dl, mask=m, other=0.0).to(tl.float32)
    n = tl.sum(tl.sum(m.to(tl.float32), 1), 0)
    mean = tl.load(mean_ptr + pid)
    rstd = tl.load(rstd_ptr + pid)
    gamma, beta, one_s, shift = _load_film(b64, c, cmask, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                                           s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                                           HAS_GAMMA, HAS_BETA, HAS_SCALE, HAS_SHIFT)
    xhat = tl.where(m, (x - mean) * rstd, 0.0)
    z = (xhat * gamma[:, None] + beta[:, None]) * one_s[:, None] + shift[:, None]
    dz = tl.where(m, dy * _silu_grad(z), 0.0)
    s1 = tl.sum(dz, 1)
    s2 = tl.sum(dz * xhat, 1)
    coef = gamma * one_s
    c1 = tl.sum(coef * s1, 0) / n
    c2 = tl.sum(coef * s2, 0) / n
    dh = (dz * coef[:, None] - c1 - xhat * c2) * rstd
    tl.store(dh_ptr + b64 * s_ob + c[:, None] * s_oc + rl[None, :] * s_ol, dh.to(dh_ptr.dtype.element_ty), mask=m)
    tl.store(s1_ptr + b64 * C + c, s1, mask=cmask)
    tl.store(s2_ptr + b64 * C + c, s2, mask=cmask)


@tuned_autotune([_cfg(4, BLOCK_C=8), _cfg(4, BLOCK_C=16), _cfg(8, BLOCK_C=32)], _cfg(4, BLOCK_C=16),
                key=["C", "L"])
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _gn_bwd_reduce_kernel(dy_ptr, h_ptr, mean_ptr, rstd_ptr, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                          p1_ptr, p2_ptr,
                          C, L, G, CPG, N_LT, TUNE_KEY, s_db, s_dc, s_dl, s_hb, s_hc, s_hl,
                          s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                          HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
                          HAS_SHIFT: tl.constexpr, VEC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """Grid (B * N_LT, c-tiles); program (b * N_LT + l-tile, c-tile): partial S1 = sum dz and S2 = sum dz * xhat of
    one tile, per channel, stored at ``p[b, c, l_tile]`` (reduced over l-tiles afterwards in a fixed order). The
    partials do not depend on the config (each channel's tile sum is over the fixed BLOCK_L)."""
    L = vec_multiple(L, VEC)
    s_db = vec_multiple(s_db, VEC)
    s_dc = vec_multiple(s_dc, VEC)
    s_hb = vec_multiple(s_hb, VEC)
    s_hc = vec_multiple(s_hc, VEC)
    pid0 = tl.program_id(0)
    b = pid0 // N_LT
    pid_l = pid0 - b * N_LT
    pid_c = tl.program_id(1)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    ls = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    cmask = c < C
    m = cmask[:, None] & (ls < L)[None, :]
    b64 = b.to(tl.int64)
    grp = c // CPG
    mean = tl.load(mean_ptr + b64 * G + grp, mask=cmask, other=0.0)
    rstd = tl.load(rstd_ptr + b64 * G + grp, mask=cmask, other=1.0)
    gamma, beta, one_s, shift = _load_film(b64, c, cmask, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                                           s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                                           HAS_GAMMA, HAS_BETA, HAS_SCALE, HAS_SHIFT)
    x = tl.load(h_ptr + b64 * s_hb + c[:, None] * s_hc + ls[None, :] * s_hl, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + b64 * s_db + c[:, None] * s_dc + ls[None, :] * s_dl, mask=m, other=0.0).to(tl.float32)
    xhat = tl.where(m, (x - mean[:, None]) * rstd[:, None], 0.0)
    z = (xhat * gamma[:, None] + beta[:, None]) * one_s[:, None] + shift[:, None]
    dz = tl.where(m, dy * _silu_grad(z), 0.0)
    off = (b64 * C + c) * N_LT + pid_l
    tl.store(p1_ptr + off, tl.sum(dz, 1), mask=cmask)
    tl.store(p2_ptr + off, tl.sum(dz * xhat, 1), mask=cmask)


@tuned_autotune(_ROW_CONFIGS, _cfg(4, BLOCK=256), key=["N", "L"], fits=_row_fits)
@triton.jit(do_not_specialize=["TUNE_KEY"])
def _gn_bwd_dh_kernel(dy_ptr, h_ptr, mean_ptr, rstd_ptr, c1_ptr, c2_ptr, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                      dh_ptr, N, L, G, CPG, TUNE_KEY, s_db, s_d1, s_d2, s_hb, s_h1, s_h2, s_ob, s_o1, s_o2,
                      s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                      HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
                      HAS_SHIFT: tl.constexpr, FLAT: tl.constexpr, VEC: tl.constexpr, BLOCK: tl.constexpr):
    """1-D grid over rows of N = C * L elements (row_tile): dh = rstd * (g - c1[b, grp] - xhat * c2[b, grp]),
    g = dz * gamma * (1 + s). Elementwise: config-independent."""
    b64, n, m, N = row_tile(N, BLOCK, VEC)
    c = n // L
    grp = b64 * G + c // CPG
    mean = tl.load(mean_ptr + grp, mask=m, other=0.0)
    rstd = tl.load(rstd_ptr + grp, mask=m, other=1.0)
    c1 = tl.load(c1_ptr + grp, mask=m, other=0.0)
    c2 = tl.load(c2_ptr + grp, mask=m, other=0.0)
    gamma, beta, one_s, shift = _load_film(b64, c, m, gamma_ptr, beta_ptr, scale_ptr, shift_ptr,
                                           s_gm, s_bt, s_sb, s_sc, s_tb, s_tc,
                                           HAS_GAMMA, HAS_BETA, HAS_SCALE, HAS_SHIFT)
    x = tl.load(h_ptr + sample_offsets(b64, n, L, s_hb, s_h1, s_h2, FLAT, VEC), mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + sample_offsets(b64, n, L, s_db, s_d1, s_d2, FLAT, VEC), mask=m, other=0.0).to(tl.float32)
    xhat = (x - mean) * rstd
    z = (xhat * gamma + beta) * one_s + shift
    dz = dy * _silu_grad(z)
    dh = (dz * (gamma * one_s) - c1 - xhat * c2) * rstd
    tl.store(dh_ptr + sample_offsets(b64, n, L, s_ob, s_o1, s_o2, FLAT, VEC), dh.to(dh_ptr.dtype.element_ty),
             mask=m)


# ------------------------------------------------------------------------------------------- Python wrappers
def _span_layout(cpg: int, L: int, *tensors: Optional[Tensor]) -> tuple[bool, int, list]:
    """``(flat, vec, layouts)`` of the group-span kernels: :func:`row_layouts` of the operands, with ``vec`` also
    dividing the span length NG = CPG * L (group starts g * NG must be provably aligned)."""
    flat, vec, layouts = row_layouts(*tensors)
    return flat, min(vec, pow2_divisor(cpg * L)), layouts


def _tile_vec(L: int, *tensors: Tensor) -> int:
    """The alignment hint of the (channel, l) tile kernels: a power of two dividing L and every operand's channel
    and sample strides (1 unless the rows are contiguous along L)."""
    values = [L]
    for t in tensors:
        sb, sc, sl = t.stride()
        if sl != 1 and L > 1:
            return 1
        values += [0 if t.shape[0] == 1 else sb, sc]
    return hint_divisor(*values)


def row_grid(B: int, N: int):
    """Grid of the row kernels (apply, dh): ``(B * ceil(N / BLOCK), 1, 1)`` (batch folded into axis 0)."""
    def grid(meta):
        return fold_grid(B, cdiv(N, meta["BLOCK"]))
    return grid


def reduce_grid(B: int, n_ltiles: int, C: int):
    """Grid of the tiled backward's reduction: ``(B * n_ltiles, c-tiles, 1)`` (batch folded into axis 0)."""
    def grid(meta):
        return fold_grid(B, n_ltiles, cdiv(C, meta["BLOCK_C"]))
    return grid


def group_stats(h: Tensor, num_groups: int, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-(sample, group) ``mean`` and ``rstd = 1/sqrt(var + eps)`` of h (B, C, L): two (B, G) fp32 tensors.

    One read of h (group spans in tiles, each two-pass, Chan merge; see :func:`_gn_stats_kernel`)."""
    check_gn_args(h, None, None, None, None, num_groups)
    B, C, L = h.shape
    G = num_groups
    cpg = C // G
    mean = new_buffer((B, G), torch.float32, h.device)
    rstd = new_buffer((B, G), torch.float32, h.device)
    flat, vec, (lay,) = _span_layout(cpg, L, h)
    _gn_stats_kernel[(fold_grid(B, G))](h, mean, rstd, L, G, cpg * L, tune_key(B), *lay.args(flat), float(eps),
                                        FLAT=flat, VEC=vec)
    return mean, rstd


def _check_out(out: Optional[Tensor], h: Tensor) -> Tensor:
    if out is None:
        return new_buffer(tuple(h.shape), h.dtype, h.device)
    check_output(out, h, h=h)
    return out


def gn_film_silu_apply(h: Tensor, mean: Tensor, rstd: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor],
                       scale: Optional[Tensor], shift: Optional[Tensor], num_groups: int,
                       out: Optional[Tensor] = None) -> Tensor:
    """``y = SiLU(((h - mean) * rstd * gamma + beta) * (1 + scale) + shift)`` from precomputed (B, G) statistics.

    One read of h, one write of y (``out`` if given: any strides, shape of h, may be ``h`` itself (in place); else a
    new contiguous tensor in h's dtype)."""
    check_gn_args(h, gamma, beta, scale, shift, num_groups)
    B, C, L = h.shape
    G = num_groups
    _check_stats(mean, rstd, B, G)
    out = _check_out(out, h)
    ptrs, strides, flags = _param_args(gamma, beta, scale, shift, h)
    flat, vec, layouts = row_layouts(h, out)
    _gn_apply_kernel[row_grid(B, C * L)](h, out, mean, rstd, *ptrs, C * L, L, G, C // G, tune_key(B),
                                         *stride_args(layouts, flat), *strides, **flags, FLAT=flat, VEC=vec)
    return out


def gn_film_silu_forward(h: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor], scale: Optional[Tensor],
                         shift: Optional[Tensor], num_groups: int, eps: float = 1e-5,
                         out: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Forward without autograd: ``(y, mean, rstd)``; y (B, C, L) in h's dtype, mean/rstd (B, G) fp32.

    Fused one-pass kernel when a group fits one program (:func:`use_fused`), else stats + apply. ``out`` as in
    :func:`gn_film_silu_apply` (``out=h`` updates h in place)."""
    check_gn_args(h, gamma, beta, scale, shift, num_groups)
    B, C, L = h.shape
    G = num_groups
    cpg = C // G
    if not use_fused(cpg, L):
        mean, rstd = group_stats(h, G, eps)
        return gn_film_silu_apply(h, mean, rstd, gamma, beta, scale, shift, G, out=out), mean, rstd
    out = _check_out(out, h)
    mean = new_buffer((B, G), torch.float32, h.device)
    rstd = new_buffer((B, G), torch.float32, h.device)
    ptrs, strides, flags = _param_args(gamma, beta, scale, shift, h)
    flat, vec, layouts = _span_layout(cpg, L, h, out)
    _gn_fused_fwd_kernel[fold_grid(B, G)](h, out, mean, rstd, *ptrs, L, G, cpg, cpg * L, tune_key(B),
                                          *stride_args(layouts, flat), *strides, float(eps), **flags,
                                          FLAT=flat, VEC=vec, BLOCK=max(16, next_power_of_2(cpg * L)))
    return out, mean, rstd


#: l-tile of the tiled backward's reduction kernel (fixed, so the partial buffer's shape is known before launch)
_BWD_REDUCE_BLOCK_L = 64 if INTERPRETED_AT_IMPORT else 256


def gn_film_silu_backward_core(dy: Tensor, h: Tensor, mean: Tensor, rstd: Tensor, gamma: Optional[Tensor],
                               beta: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor],
                               num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(dh, S1, S2)``: dh (B, C, L) in h's dtype; S1 = sum_l dz, S2 = sum_l dz * xhat, (B, C) fp32.

    No float atomics (the tiled path reduces per-l-tile partials with ``torch.sum``); see the module docstring for
    what is bitwise reproducible."""
    check_gn_args(h, gamma, beta, scale, shift, num_groups)
    B, C, L = h.shape
    G = num_groups
    cpg = C // G
    if tuple(dy.shape) != (B, C, L):
        raise ValueError(f"dy must have shape {(B, C, L)}, got {tuple(dy.shape)}")
    check_float(dy=dy)
    check_launchable(dy, h, mean, rstd)
    _check_stats(mean, rstd, B, G)
    dh = new_buffer((B, C, L), h.dtype, h.device)
    ptrs, strides, flags = _param_args(gamma, beta, scale, shift, h)
    if use_fused(cpg, L):
        s1 = new_buffer((B, C), torch.float32, h.device)
        s2 = new_buffer((B, C), torch.float32, h.device)
        block_c, block_l = _fused_blocks(cpg, L)
        _gn_fused_bwd_kernel[fold_grid(B, G)](dy, h, mean, rstd, *ptrs, dh, s1, s2, C, L, G, cpg, tune_key(B),
                                              *dy.stride(), *h.stride(), *dh.stride(), *strides, **flags,
                                              VEC=_tile_vec(L, dy, h, dh), BLOCK_C=block_c, BLOCK_L=block_l)
        return dh, s1, s2
    block_l = _BWD_REDUCE_BLOCK_L
    n_lt = cdiv(L, block_l)
    p1 = new_buffer((B, C, n_lt), torch.float32, h.device)
    p2 = new_buffer((B, C, n_lt), torch.float32, h.device)
    _gn_bwd_reduce_kernel[reduce_grid(B, n_lt, C)](dy, h, mean, rstd, *ptrs, p1, p2, C, L, G, cpg, n_lt,
                                                   tune_key(B), *dy.stride(), *h.stride(), *strides, **flags,
                                                   VEC=_tile_vec(L, dy, h), BLOCK_L=block_l)
    s1 = p1.sum(dim=2)
    s2 = p2.sum(dim=2)
    coef = _coef(gamma, scale, B, C, h.device)
    n = float(cpg * L)
    c1 = ((coef * s1).view(B, G, cpg).sum(dim=2) / n).contiguous()
    c2 = ((coef * s2).view(B, G, cpg).sum(dim=2) / n).contiguous()
    flat, vec, layouts = row_layouts(dy, h, dh)
    _gn_bwd_dh_kernel[row_grid(B, C * L)](dy, h, mean, rstd, c1, c2, *ptrs, dh, C * L, L, G, cpg, tune_key(B),
                                          *stride_args(layouts, flat), *strides, **flags, FLAT=flat, VEC=vec)
    return dh, s1, s2


def _coef(gamma: Optional[Tensor], scale: Optional[Tensor], B: int, C: int, device) -> Tensor:
    """gamma * (1 + scale) as a (B, C) fp32 tensor."""
    coef = torch.ones((B, C), dtype=torch.float32, device=device)
    if scale is not None:
        coef = coef + scale.float()
    if gamma is not None:
        coef = coef * gamma.float()[None, :]
    return coef


def film_param_grads(s1: Tensor, s2: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor],
                     scale: Optional[Tensor], shift: Optional[Tensor]):
    """``(dgamma, dbeta, dscale, dshift)`` from S1, S2 (B, C) fp32, each in its parameter's dtype (None where the
    parameter is None). Plain torch ops on (B, C) tensors: deterministic, traceable."""
    one_s = None if scale is None else 1.0 + scale.float()
    dgamma = dbeta = dscale = dshift = None
    if gamma is not None:
        dgamma = (s2 if one_s is None else one_s * s2).sum(dim=0).to(gamma.dtype)
    if beta is not None:
        dbeta = (s1 if one_s is None else one_s * s1).sum(dim=0).to(beta.dtype)
    if scale is not None:
        ds = s2 if gamma is None else gamma.float()[None, :] * s2
        if beta is not None:
            ds = ds + beta.float()[None, :] * s1
        dscale = ds.to(scale.dtype)
    if shift is not None:
        dshift = s1.to(shift.dtype)
    return dgamma, dbeta, dscale, dshift


def gn_film_silu_backward(dy: Tensor, h: Tensor, mean: Tensor, rstd: Tensor, gamma: Optional[Tensor],
                          beta: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor],
                          num_groups: int):
    """``(dh, dgamma, dbeta, dscale, dshift)`` given dy = dL/dy and the saved (B, G) statistics; entries for absent
    parameters are None. Deterministic."""
    dh, s1, s2 = _bwd_op(dy, h, mean, rstd, gamma, beta, scale, shift, num_groups)
    return (dh,) + film_param_grads(s1, s2, gamma, beta, scale, shift)


# ---------------------------------------------------------------------------- torch.library ops + autograd
def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.flowfm, name)
        return True
    except (AttributeError, RuntimeError):
        return False


if not _has_op("gn_film_silu_fwd"):  # a re-import (importlib.reload) keeps the registered ops
    @torch.library.custom_op("flowfm::gn_film_silu_fwd", mutates_args=())
    def _gn_fwd_op(h: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor], scale: Optional[Tensor],
                   shift: Optional[Tensor], num_groups: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        return gn_film_silu_forward(h, gamma, beta, scale, shift, num_groups, eps)

    @_gn_fwd_op.register_fake
    def _gn_fwd_fake(h, gamma, beta, scale, shift, num_groups, eps):
        B, C, L = h.shape
        return (h.new_empty((B, C, L)), h.new_empty((B, num_groups), dtype=torch.float32),
                h.new_empty((B, num_groups), dtype=torch.float32))

    @torch.library.custom_op("flowfm::gn_film_silu_bwd", mutates_args=())
    def _gn_bwd_op(dy: Tensor, h: Tensor, mean: Tensor, rstd: Tensor, gamma: Optional[Tensor],
                   beta: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor],
                   num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
        return gn_film_silu_backward_core(dy, h, mean, rstd, gamma, beta, scale, shift, num_groups)

    @_gn_bwd_op.register_fake
    def _gn_bwd_fake(dy, h, mean, rstd, gamma, beta, scale, shift, num_groups):
        B, C, L = h.shape
        return (h.new_empty((B, C, L)), h.new_empty((B, C), dtype=torch.float32),
                h.new_empty((B, C), dtype=torch.float32))

    def _gn_setup_context(ctx, inputs, output):
        h, gamma, beta, scale, shift, num_groups, eps = inputs
        _, mean, rstd = output
        ctx.save_for_backward(h, gamma, beta, scale, shift, mean, rstd)
        ctx.num_groups = num_groups
        ctx.mark_non_differentiable(mean, rstd)

    def _gn_autograd_backward(ctx, dy, _dmean, _drstd):
        h, gamma, beta, scale, shift, mean, rstd = ctx.saved_tensors
        dh, s1, s2 = torch.ops.flowfm.gn_film_silu_bwd(dy, h, mean, rstd, gamma, beta, scale, shift,
                                                        ctx.num_groups)
        return (dh,) + film_param_grads(s1, s2, gamma, beta, scale, shift) + (None, None)

    torch.library.register_autograd("flowfm::gn_film_silu_fwd", _gn_autograd_backward,
                                    setup_context=_gn_setup_context)


def _bwd_op(*args):
    return torch.ops.flowfm.gn_film_silu_bwd(*args)


def gn_film_silu_triton(h: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor], scale: Optional[Tensor],
                        shift: Optional[Tensor], num_groups: int, eps: float = 1e-5) -> Tensor:
    """Triton backend of :func:`flowfm_kernels.gn_film_silu` (same signature and values as
    :func:`~flowfm_kernels.gn_film_silu.reference.gn_film_silu_ref`); differentiable w.r.t. h, gamma, beta, scale,
    shift. Runs as the custom op ``flowfm::gn_film_silu_fwd`` (opaque to torch.compile)."""
    check_gn_args(h, gamma, beta, scale, shift, num_groups)
    return torch.ops.flowfm.gn_film_silu_fwd(h, gamma, beta, scale, shift, int(num_groups), float(eps))[0]


# ------------------------------------------------------------------------------------------------ cost model
def gn_film_silu_cost(B: int, C: int, L: int, dtype: torch.dtype = torch.float32, num_groups: int = 8) -> dict:
    """Bytes moved and FLOPs of one forward (``bytes``, ``flops``) and one backward (``backward_*``) call.

    Forward: read h, write y (fused path; the tiled path reads h twice, ``bytes_tiled``), plus gamma, beta (C),
    scale, shift (B, C) and mean/rstd (B, G) fp32. FLOPs counted per element: statistics 4 (add; sub, mul, add),
    normalise + FiLM 3 (sub, fma), SiLU 4 (exp, add, div... counted as 1 each) = 11.
    Backward (fused): read h and dy, write dh (+ params, S1/S2); about 25 FLOPs per element (recompute z, SiLU'
    (exp, div, 4), dz, two reductions, dh)."""
    e = dtype_bytes(dtype)
    n = B * C * L
    params = (2 * C + 2 * B * C) * e
    stats = 2 * B * num_groups * 4
    fwd = 2 * n * e + params + stats
    bwd = 3 * n * e + params + stats + 2 * B * C * 4
    return dict(bytes=fwd, flops=11 * n, bytes_tiled=fwd + n * e,
                backward_bytes=bwd, backward_flops=25 * n, backward_bytes_tiled=bwd + 2 * n * e)


__all__ = ["gn_film_silu_triton", "gn_film_silu_cost", "group_stats", "gn_film_silu_apply",
           "gn_film_silu_forward", "gn_film_silu_backward", "gn_film_silu_backward_core", "film_param_grads",
           "FUSED_MAX_ELEMS", "use_fused", "new_buffer", "check_gn_args",
           "check_film_shapes"]
