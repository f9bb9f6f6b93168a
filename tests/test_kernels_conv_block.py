"""Triton conv block (Conv1d k=3 implicit GEMM + GN + FiLM + SiLU) against the eager reference.

CPU: the Triton interpreter (TRITON_INTERPRET=1, set by conftest.py when no GPU is present), where ``tl.dot`` is full fp32.
GPU: compiled kernels; fp32 comparisons use ``precision="ieee"`` with cuDNN's TF32 switched off for the reference,
and the TF32 default is checked separately at 5e-3.
Tolerances (relative RMS): fp32 1e-5 (measured ~2e-7), fp16 2e-3 and bf16 1.6e-2 for y (tests.numerics.REL_RMS_TOL;
measured 9e-6 / 4e-3); gradients in fp16 / bf16 get twice that (dh is rounded to the input dtype before the two
backward GEMMs, on both sides).
"""

import pytest
import torch


pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

import flowfm_kernels  # noqa: E402
from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels.conv_block import triton as ct  # noqa: E402
from flowfm_kernels.conv_block.reference import conv_block_ref  # noqa: E402
from flowfm_kernels.gn_film_silu import triton as gt  # noqa: E402
from tests.numerics import REL_RMS_TOL, assert_rel_rms, no_tf32, non_contiguous, rel_rms  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not dispatch.triton_interpreting():
    pytest.skip("no GPU and TRITON_INTERPRET=0: the triton kernels cannot run here", allow_module_level=True)

NAMES = ("x", "weight", "bias", "gamma", "beta", "scale", "shift")
TF32_TOL = 5e-3


def make_inputs(B, Cin, Cout, L, dtype=torch.float32, seed=0, which=NAMES, bias_mean=0.0):
    g = torch.Generator().manual_seed(seed)
    vals = {
        "x": torch.randn(B, Cin, L, generator=g),
        "weight": torch.randn(Cout, Cin, 3, generator=g) / (3 * Cin) ** 0.5,
        "bias": bias_mean + 0.3 * torch.randn(Cout, generator=g),
        "gamma": 1.0 + 0.5 * torch.randn(Cout, generator=g),
        "beta": 0.5 * torch.randn(Cout, generator=g),
        "scale": 0.3 * torch.randn(B, Cout, generator=g),
        "shift": 0.5 * torch.randn(B, Cout, generator=g),
    }
    return [vals[n].to(DEVICE, dtype) if (n in ("x", "weight") or n in which) else None for n in NAMES]


def reference(x, weight, bias, gamma, beta, scale, shift, G, eps=1e-5):
    """conv_block_ref; gamma=None with a beta is passed as ones (F.group_norm's backward fails for weight=None
    with a bias on torch 2.13 CPU)."""
    if gamma is None and beta is not None:
        gamma = torch.ones(weight.shape[0], dtype=beta.dtype, device=beta.device)
    with no_tf32():
        return conv_block_ref(x, weight, bias, gamma, beta, scale, shift, G, eps)


def triton_ieee(*args):
    return ct.conv_block_triton(*args, precision="ieee")


def run(fn, inputs, G, dy, requires_grad=NAMES):
    leaves = [None if t is None else t.detach().clone().requires_grad_(n in requires_grad)
              for n, t in zip(NAMES, inputs)]
    y = fn(*leaves, G, 1e-5)
    with no_tf32():
        y.backward(dy)
    return y.detach(), [None if t is None else t.grad for t in leaves]


def compare(inputs, G, tol, what="", fn=triton_ieee, grad_tol=None, dy=None, requires_grad=NAMES):
    x, weight = inputs[:2]
    B, L, Cout = x.shape[0], x.shape[2], weight.shape[0]
    if dy is None:
        dy = torch.randn(B, Cout, L, generator=torch.Generator().manual_seed(1)).to(DEVICE, x.dtype)
    y, grads = run(fn, inputs, G, dy, requires_grad)
    y_ref, grads_ref = run(reference, inputs, G, dy, requires_grad)
    assert y.dtype == x.dtype
    assert_rel_rms(y, y_ref, tol, f"{what} y")
    for name, g, g_ref in zip(NAMES, grads, grads_ref):
        if g_ref is None:
            assert g is None, f"{what} d{name} should be None"
            continue
        assert g.dtype == g_ref.dtype and g.shape == g_ref.shape
        assert_rel_rms(g, g_ref, grad_tol or tol, f"{what} d{name}")
    return y, grads


@pytest.fixture(params=["fused", "tiled"])
def gn_path(request, monkeypatch):
    """The GN backward inside the conv block through the fused and the tiled kernels."""
    if request.param == "tiled":
        monkeypatch.setattr(gt, "FUSED_MAX_ELEMS", 0)
    return request.param


# shapes: channels not a multiple of the 16-wide interpreter tiles, several ci blocks / co tiles / l tiles, L = 1,
# a 3-channel input (the U-Net's first conv), and one L = 300 case
@pytest.mark.parametrize("B,Cin,Cout,L,G", [(2, 24, 24, 17, 8), (1, 40, 40, 70, 8), (3, 3, 16, 1, 4),
                                            (1, 8, 16, 300, 4)])
def test_matches_reference_fp32(B, Cin, Cout, L, G):
    compare(make_inputs(B, Cin, Cout, L), G, REL_RMS_TOL[torch.float32], f"{(B, Cin, Cout, L, G)}")


def test_tiled_gn_backward(gn_path):
    compare(make_inputs(2, 24, 40, 33), 8, REL_RMS_TOL[torch.float32], gn_path)


@pytest.mark.parametrize("which", [("x", "weight"), ("x", "weight", "bias", "scale"),
                                   ("x", "weight", "beta", "shift")])
def test_optional_args_none(which):
    compare(make_inputs(2, 16, 24, 17, which=which), 8, REL_RMS_TOL[torch.float32], f"only {which}")


def test_input_without_grad():
    """x not requiring grad (the U-Net's data input): no dx is computed, the rest still is."""
    compare(make_inputs(2, 16, 24, 17), 8, REL_RMS_TOL[torch.float32], "no dx",
            requires_grad=NAMES[1:])


def test_non_contiguous_inputs():
    x, weight, bias, gamma, beta, scale, shift = make_inputs(2, 24, 24, 19)
    inputs = [non_contiguous(x), weight.transpose(0, 1).contiguous().transpose(0, 1), non_contiguous(bias), gamma,
              beta, scale.t().contiguous().t(), shift]
    assert not inputs[1].is_contiguous() and not inputs[5].is_contiguous()
    dy = non_contiguous(torch.randn(2, 24, 19, generator=torch.Generator().manual_seed(2)).to(DEVICE))
    compare(inputs, 8, REL_RMS_TOL[torch.float32], "strided", dy=dy)


def test_internal_buffers_nan_poisoned(monkeypatch, gn_path):
    """h, y, the GN partials, statistics, dh, dx and the dW / dbias split partials all start as NaN."""
    monkeypatch.setenv("FLOWFM_DEBUG_NAN_POISON", "1")
    compare(make_inputs(3, 24, 24, 40), 8, REL_RMS_TOL[torch.float32], f"poisoned {gn_path}")


def test_epilogue_statistics_large_mean():
    """Channels with mean ~1e3 (a large bias) and std ~1: the merged epilogue partials give float64-accurate
    statistics of the stored h, where naive E[h^2] - E[h]^2 in fp32 would not."""
    B, Cout, L, G = 2, 16, 70, 4
    x, weight, bias, *_ = make_inputs(B, 8, Cout, L, bias_mean=1e3)
    h, (pmean, pm2, tile_l) = ct.conv1d_k3_forward(x, weight, bias, "ieee", with_stats=True)
    with no_tf32():
        assert_rel_rms(h, F.conv1d(x, weight, bias, padding=1), REL_RMS_TOL[torch.float32], "h")
    mean, rstd = ct.merge_conv_stats(pmean, pm2, tile_l, L, G)
    hv = h.double().view(B, G, -1)
    var64 = hv.var(-1, unbiased=False)
    assert_rel_rms(mean, hv.mean(-1), 1e-6, "mean")
    assert_rel_rms(rstd, 1 / torch.sqrt(var64 + 1e-5), 1e-5, "rstd")
    h32 = h.view(B, G, -1)
    assert rel_rms((h32 * h32).mean(-1) - h32.mean(-1) ** 2, var64) > 1e-2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    compare(make_inputs(2, 24, 24, 40, dtype=dtype), 8, REL_RMS_TOL[dtype], f"{dtype}",
            grad_tol=2 * REL_RMS_TOL[dtype])


def test_backward_is_deterministic():
    """Two backward runs give bit-identical dx, dW, dbias and GN gradients (B=3: dW split over 3 batch chunks)."""
    inputs = make_inputs(3, 24, 24, 40)
    dy = torch.randn(3, 24, 40, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    y1, g1 = run(ct.conv_block_triton, inputs, 8, dy)
    y2, g2 = run(ct.conv_block_triton, inputs, 8, dy)
    assert torch.equal(y1, y2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_conv1d_k3_alone():
    x, weight, bias, *_ = make_inputs(2, 24, 40, 17)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out = ct.conv1d_k3_triton(*leaves, precision="ieee")
    dy = torch.randn_like(out)
    out.backward(dy)
    ref_leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    with no_tf32():
        ref = F.conv1d(*ref_leaves, padding=1)
        ref.backward(dy)
    tol = REL_RMS_TOL[torch.float32]
    assert_rel_rms(out, ref, tol, "conv")
    for name, a, b in zip(("dx", "dW", "dbias"), leaves, ref_leaves):
        assert_rel_rms(a.grad, b.grad, tol, name)


def test_dispatcher_triton_equals_eager():
    inputs = make_inputs(2, 16, 24, 17)
    leaves = [t.clone().requires_grad_() for t in inputs]
    y = flowfm_kernels.conv_block(*leaves, 8, 1e-5, backend="triton")
    with no_tf32():
        y_eager = flowfm_kernels.conv_block(*inputs, 8, 1e-5, backend="eager")
    tol = TF32_TOL if DEVICE == "cuda" else REL_RMS_TOL[torch.float32]  # dispatcher uses the default precision
    assert_rel_rms(y, y_eager, tol, "dispatch")
    y.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)


def test_custom_ops_opcheck_and_torch_compile():
    x, weight, bias, gamma, beta, scale, shift = make_inputs(2, 16, 16, 17)
    torch.library.opcheck(torch.ops.flowfm.conv_block_fwd.default,
                          (x.clone().requires_grad_(), weight.clone().requires_grad_(), bias, None, beta,
                           scale.clone().requires_grad_(), None, 4, 1e-5, "ieee"))
    torch.library.opcheck(torch.ops.flowfm.conv1d_k3.default,
                          (x.clone().requires_grad_(), weight.clone().requires_grad_(), None, "ieee"))

    def f(x, weight, scale):
        return ct.conv_block_triton(x, weight, None, None, None, scale, None, 4, precision="ieee").square().sum()

    leaves = [t.clone().requires_grad_() for t in (x, weight, scale)]
    torch.compile(f, backend="aot_eager", fullgraph=True)(*leaves).backward()
    leaves2 = [t.clone().requires_grad_() for t in (x, weight, scale)]
    f(*leaves2).backward()
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(leaves, leaves2))


def test_precision_setting(monkeypatch):
    monkeypatch.setenv("FLOWFM_TRITON_DOT_PRECISION", "IEEE")
    assert ct.dot_precision() == "ieee"
    monkeypatch.setenv("FLOWFM_TRITON_DOT_PRECISION", "fp64")
    with pytest.raises(ValueError):
        ct.dot_precision()
    x, weight, *_ = make_inputs(1, 4, 8, 5)
    with pytest.raises(ValueError):
        ct.conv_block_triton(x, weight, None, None, None, None, None, 4, precision="fast")


def test_rejects_bad_arguments():
    x, weight, bias, gamma, beta, scale, shift = make_inputs(2, 16, 24, 17)
    with pytest.raises(ValueError):
        ct.conv_block_triton(x, weight[:, :8], bias, gamma, beta, scale, shift, 8)
    with pytest.raises(ValueError):
        ct.conv_block_triton(x, weight, bias, gamma, beta, scale, shift, 5)
    with pytest.raises(ValueError):
        ct.conv_block_triton(x, weight, bias[:4], gamma, beta, scale, shift, 8)
    with pytest.raises(ValueError):
        ct.conv_block_triton(x, weight, bias, gamma, beta, scale[:, :4], shift, 8)
    with pytest.raises(TypeError):
        ct.conv_block_triton(x, weight.double(), bias, gamma, beta, scale, shift, 8)


def test_cost_model():
    c = ct.conv_block_cost(64, 128, 128, 300, torch.bfloat16)
    assert c["flops"] > 2 * 64 * 128 * 300 * 128 * 3
    assert c["min_bytes"] < c["bytes"] < 4 * 64 * 128 * 300 * 2 + 10 ** 6
    assert c["backward_flops"] > 2 * c["flops"] - 64 * 128 * 300 * 12


# -------------------------------------------------------------------------------- GPU (compiled kernels)
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gpu_realistic_size(dtype):
    compare(make_inputs(64, 128, 128, 300, dtype=dtype), 8, REL_RMS_TOL[dtype], f"gpu {dtype}",
            grad_tol=2 * REL_RMS_TOL[dtype] if dtype != torch.float32 else 1e-4)


@pytest.mark.gpu
def test_gpu_tf32_default():
    """The default precision (TF32 tensor cores for fp32 operands) against a true-fp32 reference."""
    compare(make_inputs(16, 64, 128, 300), 8, TF32_TOL, "gpu tf32", fn=ct.conv_block_triton)


@pytest.mark.gpu
def test_gpu_first_layer_and_odd_sizes():
    compare(make_inputs(8, 3, 64, 301), 8, 1e-4, "gpu Cin=3")
    compare(make_inputs(5, 40, 24, 299, dtype=torch.bfloat16), 8, REL_RMS_TOL[torch.bfloat16], "gpu odd bf16",
            grad_tol=2 * REL_RMS_TOL[torch.bfloat16])


@pytest.mark.gpu
def test_gpu_deterministic_realistic():
    inputs = make_inputs(64, 128, 128, 300, dtype=torch.bfloat16)
    dy = torch.randn(64, 128, 300, device=DEVICE, dtype=torch.bfloat16)
    _, g1 = run(ct.conv_block_triton, inputs, 8, dy)
    _, g2 = run(ct.conv_block_triton, inputs, 8, dy)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
