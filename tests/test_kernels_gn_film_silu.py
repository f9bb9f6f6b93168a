"""Triton GroupNorm + FiLM + SiLU against the eager reference.

Runs on CPU through the Triton interpreter (TRITON_INTERPRET=1 is set by conftest.py when no GPU is present, before Triton
is imported) and on a GPU with compiled kernels. Tolerances (relative RMS, :mod:`tests.numerics`): fp32 1e-5 for
values and gradients (both sides compute in fp32; measured ~2e-7), fp16 2e-3, bf16 1.6e-2 (REL_RMS_TOL: outputs are
rounded to the input dtype on both sides, so the error is the rounding of the output; measured 0 / 4e-3).
Large-mean inputs (mean 1e3, std 1) are compared with float64: 1e-4 for y (the fp32 representation of h and its
mean limit it to ~3e-5; naive E[x^2] - E[x]^2 gives ~7e-2) and 1e-5 for rstd.
"""

import pytest
import torch


pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

import flowfm_kernels  # noqa: E402
from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels.gn_film_silu import triton as gt  # noqa: E402
from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref  # noqa: E402
from tests.numerics import REL_RMS_TOL, assert_rel_rms, nan_poisoned_like, non_contiguous, rel_rms  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not dispatch.triton_interpreting():
    pytest.skip("no GPU and TRITON_INTERPRET=0: the triton kernels cannot run here", allow_module_level=True)

NAMES = ("h", "gamma", "beta", "scale", "shift")


def make_inputs(B, C, L, dtype=torch.float32, mean=0.5, std=2.0, seed=0, which=NAMES):
    """Random (never zero) operands; entries not in ``which`` are None."""
    g = torch.Generator().manual_seed(seed)
    vals = {
        "h": torch.randn(B, C, L, generator=g) * std + mean,
        "gamma": 1.0 + 0.5 * torch.randn(C, generator=g),
        "beta": 0.5 * torch.randn(C, generator=g),
        "scale": 0.3 * torch.randn(B, C, generator=g),
        "shift": 0.5 * torch.randn(B, C, generator=g),
    }
    return [vals[n].to(DEVICE, dtype) if (n == "h" or n in which) else None for n in NAMES]


def reference(h, gamma, beta, scale, shift, G, eps=1e-5):
    """:func:`gn_film_silu_ref`, except that gamma=None with a beta is passed as ones: F.group_norm's backward
    fails ("tensor does not have a device") for weight=None with a bias on torch 2.13 CPU."""
    if gamma is None and beta is not None:
        gamma = torch.ones(h.shape[1], dtype=beta.dtype, device=beta.device)
    return gn_film_silu_ref(h, gamma, beta, scale, shift, G, eps)


def run(fn, inputs, G, dy, eps=1e-5):
    """Forward + backward of ``fn``; returns (y, [grad or None per input])."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in inputs]
    y = fn(*leaves, G, eps)
    y.backward(dy)
    return y.detach(), [None if t is None else t.grad for t in leaves]


def compare(inputs, G, tol, what="", dy=None, fn=gt.gn_film_silu_triton, grad_tol=None):
    h = inputs[0]
    if dy is None:
        dy = torch.randn(h.shape, generator=torch.Generator().manual_seed(1)).to(h.device, h.dtype)
    y, grads = run(fn, inputs, G, dy)
    y_ref, grads_ref = run(reference, inputs, G, dy)
    assert y.dtype == h.dtype
    assert_rel_rms(y, y_ref, tol, f"{what} y")
    for name, g, g_ref in zip(NAMES, grads, grads_ref):
        if g_ref is None:
            assert g is None
            continue
        assert g.dtype == g_ref.dtype and g.shape == g_ref.shape
        assert_rel_rms(g, g_ref, grad_tol or tol, f"{what} d{name}")
    return y, grads


@pytest.fixture(params=["fused", "tiled"])
def path(request, monkeypatch):
    """Run a test through the one-pass fused kernels and through the tiled (stats + apply) kernels."""
    if request.param == "tiled":
        monkeypatch.setattr(gt, "FUSED_MAX_ELEMS", 0)
    return request.param


@pytest.mark.parametrize("B,C,L,G", [(2, 24, 17, 8), (1, 40, 1, 8), (3, 16, 300, 4)])
def test_matches_reference_fp32(B, C, L, G, path):
    compare(make_inputs(B, C, L), G, REL_RMS_TOL[torch.float32], f"{path} {(B, C, L, G)}")


@pytest.mark.parametrize("which", [(), ("gamma", "shift"), ("beta", "scale")])
def test_optional_args_none(which, path):
    compare(make_inputs(2, 40, 17, which=which), 8, REL_RMS_TOL[torch.float32], f"{path} only {which}")


def test_non_contiguous_inputs(path):
    h, gamma, beta, scale, shift = make_inputs(2, 24, 33)
    inputs = [non_contiguous(h), gamma, beta, scale.t().contiguous().t(), non_contiguous(shift)]
    assert not inputs[3].is_contiguous()
    dy = non_contiguous(torch.randn(h.shape, generator=torch.Generator().manual_seed(3)).to(DEVICE))
    compare(inputs, 8, REL_RMS_TOL[torch.float32], f"{path} strided", dy=dy)


def test_internal_buffers_nan_poisoned(path, monkeypatch):
    """Every buffer the wrappers allocate starts as NaN: an unwritten element would surface in y or a gradient."""
    monkeypatch.setenv("FLOWFM_DEBUG_NAN_POISON", "1")
    assert torch.isnan(gt.new_buffer((2,), torch.float32, DEVICE)).all()
    compare(make_inputs(3, 24, 17), 8, REL_RMS_TOL[torch.float32], f"{path} poisoned")


def test_apply_writes_every_element_of_poisoned_out(path):
    h, gamma, beta, scale, shift = make_inputs(2, 40, 19)
    mean, rstd = gt.group_stats(h, 8)
    out = non_contiguous(nan_poisoned_like(h))
    y = gt.gn_film_silu_apply(h, mean, rstd, gamma, beta, scale, shift, 8, out=out)
    assert y is out
    assert_rel_rms(out, gn_film_silu_ref(h, gamma, beta, scale, shift, 8), REL_RMS_TOL[torch.float32], "out=")
    y2, _, _ = gt.gn_film_silu_forward(h, gamma, beta, scale, shift, 8, out=nan_poisoned_like(h))
    assert_rel_rms(y2, out, REL_RMS_TOL[torch.float32], "forward out=")


def test_large_mean_statistics_are_stable(path):
    """mean 1e3, std 1: the kernel's rstd matches float64 to 1e-5, while naive E[x^2] - E[x]^2 in fp32 is off by
    more than 1e-2 (so the data really discriminates)."""
    B, C, L, G = 2, 16, 300, 4
    h, *_ = make_inputs(B, C, L, mean=1e3, std=1.0)
    hv = h.double().view(B, G, -1)
    mean64, var64 = hv.mean(-1), hv.var(-1, unbiased=False)
    rstd64 = 1 / torch.sqrt(var64 + 1e-5)
    mean, rstd = gt.group_stats(h, G) if path == "tiled" else gt.gn_film_silu_forward(h, None, None, None, None, G)[1:]
    assert_rel_rms(mean, mean64, 1e-6, "mean")
    assert_rel_rms(rstd, rstd64, 1e-5, "rstd")
    h32 = h.view(B, G, -1)
    naive_var = (h32 * h32).mean(-1) - h32.mean(-1) ** 2
    assert rel_rms(naive_var, var64) > 1e-2
    y = gt.gn_film_silu_triton(h, None, None, None, None, G)
    y64 = F.silu(F.group_norm(h.double(), G, eps=1e-5))
    assert_rel_rms(y, y64, 1e-4, "y vs float64")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype, path):
    compare(make_inputs(2, 24, 40, dtype=dtype), 8, REL_RMS_TOL[dtype], f"{path} {dtype}")


def test_backward_is_deterministic(path):
    inputs = make_inputs(3, 40, 70)
    dy = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    y1, g1 = run(gt.gn_film_silu_triton, inputs, 8, dy)
    y2, g2 = run(gt.gn_film_silu_triton, inputs, 8, dy)
    assert torch.equal(y1, y2)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


def test_backward_helper_and_autograd_function():
    h, gamma, beta, scale, shift = make_inputs(2, 24, 17)
    y, mean, rstd = gt.gn_film_silu_forward(h, gamma, None, scale, None, 8)
    dy = torch.randn_like(y)
    dh, dgamma, dbeta, dscale, dshift = gt.gn_film_silu_backward(dy, h, mean, rstd, gamma, None, scale, None, 8)
    assert dbeta is None and dshift is None and dh.shape == h.shape and dscale.shape == scale.shape
    _, grads_ref = run(gn_film_silu_ref, [h, gamma, None, scale, None], 8, dy)
    expected = (grads_ref[0], grads_ref[1], grads_ref[3])
    for g, g_ref, name in zip((dh, dgamma, dscale), expected, ("h", "gamma", "scale")):
        assert_rel_rms(g, g_ref, REL_RMS_TOL[torch.float32], name)


def test_dispatcher_triton_equals_eager():
    h, gamma, beta, scale, shift = make_inputs(2, 24, 17)
    leaves = [t.clone().requires_grad_() for t in (h, gamma, beta, scale, shift)]
    y = flowfm_kernels.gn_film_silu(*leaves, 8, 1e-5, backend="triton")
    y_eager = flowfm_kernels.gn_film_silu(h, gamma, beta, scale, shift, 8, 1e-5, backend="eager")
    assert_rel_rms(y, y_eager, REL_RMS_TOL[torch.float32], "dispatch")
    y.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)


def test_custom_op_opcheck_and_torch_compile():
    h, gamma, beta, scale, shift = make_inputs(2, 16, 17)
    torch.library.opcheck(torch.ops.flowfm.gn_film_silu_fwd.default,
                          (h.clone().requires_grad_(), gamma, None, scale.clone().requires_grad_(), shift, 4, 1e-5))

    def f(h, gamma, scale):
        return gt.gn_film_silu_triton(h, gamma, None, scale, None, 4).square().sum()

    leaves = [t.clone().requires_grad_() for t in (h, gamma, scale)]
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    compiled(*leaves).backward()
    leaves2 = [t.clone().requires_grad_() for t in (h, gamma, scale)]
    f(*leaves2).backward()
    for a, b in zip(leaves, leaves2):
        assert torch.equal(a.grad, b.grad)


def test_rejects_bad_arguments():
    h, gamma, beta, scale, shift = make_inputs(2, 24, 17)
    with pytest.raises(ValueError):
        gt.gn_film_silu_triton(h, gamma, beta, scale, shift, 5)
    with pytest.raises(ValueError):
        gt.gn_film_silu_triton(h, gamma[:8], beta, scale, shift, 8)
    with pytest.raises(ValueError):
        gt.gn_film_silu_triton(h, gamma, beta, scale[:1], shift, 8)
    with pytest.raises(TypeError):
        gt.gn_film_silu_triton(h.to(torch.int32), None, None, None, None, 8)


def test_cost_model():
    c = gt.gn_film_silu_cost(64, 128, 300, torch.bfloat16)
    n = 64 * 128 * 300
    assert c["bytes"] >= 2 * n * 2 and c["bytes"] < 2.1 * n * 2
    assert c["flops"] == 11 * n and c["backward_bytes"] > c["bytes"]
    assert gt.gn_film_silu_cost(1, 8, 8, torch.float32)["bytes"] > gt.gn_film_silu_cost(1, 8, 8, torch.float16)["bytes"]


# -------------------------------------------------------------------------------- GPU (compiled kernels)
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gpu_realistic_size(dtype):
    compare(make_inputs(64, 128, 300, dtype=dtype), 8, REL_RMS_TOL[dtype], f"gpu {dtype}")


@pytest.mark.gpu
def test_gpu_tiled_path_long_sequence():
    assert not gt.use_fused(64 // 8, 4096)
    compare(make_inputs(4, 64, 4096), 8, REL_RMS_TOL[torch.float32], "gpu tiled")
    compare(make_inputs(4, 64, 4096, dtype=torch.bfloat16), 8, REL_RMS_TOL[torch.bfloat16], "gpu tiled bf16")


@pytest.mark.gpu
def test_gpu_deterministic_realistic():
    inputs = make_inputs(64, 128, 300, dtype=torch.bfloat16)
    dy = torch.randn_like(inputs[0])
    _, g1 = run(gt.gn_film_silu_triton, inputs, 8, dy)
    _, g2 = run(gt.gn_film_silu_triton, inputs, 8, dy)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
