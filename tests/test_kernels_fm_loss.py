"""Triton flow-matching loss (+ dL/dv) and path interpolation against the eager references.

Without CUDA the kernels run on CPU tensors through the Triton interpreter (``TRITON_INTERPRET=1``, set by conftest.py before
anything imports Triton); with CUDA the same tests run the compiled kernels on the GPU, plus the ``gpu``-marked ones.
The kernels compute in fp32 (fp64 inputs too, like the reference), so gradients are compared with autograd through
the reference in fp32 rather than by a float64 gradcheck.
Note: the interpreter rounds fp32 -> bf16 by truncation (GPUs round to nearest even), which roughly doubles bf16
errors here; they stay well inside tests/numerics.REL_RMS_TOL.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch


import pytest  # noqa: E402

pytest.importorskip("triton")

from numerics import REL_RMS_TOL, assert_rel_rms, non_contiguous  # noqa: E402

from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels.fm_loss import triton as tri  # noqa: E402
from flowfm_kernels.fm_loss.reference import flow_matching_loss_ref, interpolate_ref  # noqa: E402

DEVICE = "cpu" if dispatch.triton_interpreting() else "cuda"
SHAPES = [(1, 3, 1), (3, 5, 17), (3, 3, 299), (1, 3, 300), (3, 5, 301)]
FP32_TOL = REL_RMS_TOL[torch.float32]


def rand(shape, seed, dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device=DEVICE, dtype=dtype).requires_grad_(requires_grad)


def relayout(t, layout):
    """Same values (and requires_grad), other memory layout: strided rows, or channels-last (non-flat rows)."""
    if layout == "contig":
        out = t.detach().contiguous().clone()
    elif layout == "strided":
        out = non_contiguous(t.detach())
    elif layout == "channels_last":
        B, C, L = t.shape
        out = torch.empty(B, L, C, dtype=t.dtype, device=t.device).transpose(1, 2)
        out.copy_(t.detach())
    else:
        raise ValueError(layout)
    return out.requires_grad_(t.requires_grad)


def grad_output(loss, seed):
    """A random cotangent for the loss (never 1, so the scaling by grad_output is exercised)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(loss.shape, generator=g) + 0.5).to(loss.device)


def loss_and_grads(fn, v, x0, x1, sigma_min, reduction, seed=0):
    loss = fn(v, x0, x1, sigma_min, reduction)
    inputs = [t for t in (v, x0, x1) if t.requires_grad]
    grads = torch.autograd.grad(loss, inputs, grad_output(loss, seed)) if inputs else ()
    return loss.detach(), grads


def check_against_reference(v, x0, x1, sigma_min, reduction, tol, grad_tol=None, what=""):
    got, got_grads = loss_and_grads(tri.flow_matching_loss_triton, v, x0, x1, sigma_min, reduction)
    exp, exp_grads = loss_and_grads(flow_matching_loss_ref, v, x0, x1, sigma_min, reduction)
    assert got.dtype == torch.float32 and got.shape == exp.shape
    assert_rel_rms(got, exp, tol, f"loss {what}")
    for name, a, b in zip(("dv", "dx0", "dx1"), got_grads, exp_grads):
        assert a.dtype == b.dtype, f"{name} dtype"
        assert_rel_rms(a, b, grad_tol or tol, f"{name} {what}")
    return got, got_grads


# ----------------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_loss_and_grads_match_reference(shape, reduction):
    sigma_min = 0.1 if shape[2] % 2 else 0.0
    v, x0, x1 = (rand(shape, s, requires_grad=True) for s in (1, 2, 3))
    check_against_reference(v, x0, x1, sigma_min, reduction, FP32_TOL, what=f"{shape} {reduction}")


@pytest.mark.parametrize("layouts", [("strided", "strided", "strided"), ("channels_last", "strided", "contig")])
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_loss_non_contiguous(layouts, reduction):
    shape = (3, 5, 301)
    v, x0, x1 = (relayout(rand(shape, s, requires_grad=True), lay) for s, lay in zip((1, 2, 3), layouts))
    assert not v.is_contiguous()
    check_against_reference(v, x0, x1, 0.05, reduction, FP32_TOL, what=f"{layouts}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_loss_low_precision(dtype, reduction):
    shape = (3, 5, 61)
    v, x0, x1 = (rand(shape, s, dtype, requires_grad=True) for s in (1, 2, 3))
    # inputs are read exactly and summed in fp32 like the reference: the loss itself stays fp32-accurate
    check_against_reference(v, x0, x1, 0.1, reduction, FP32_TOL, REL_RMS_TOL[dtype], what=str(dtype))


def test_loss_fp16_large_batch_with_loss_scale():
    """fp16 training with a GradScaler-like grad_output of 2**16 and a small residual (a well-fitted model):
    dL/dv = 2 d / n alone would sit deep in fp16's subnormal range (n = 11712, |d| ~ 0.01 -> ~1e-6), so the kernel
    must not store it before the cotangent has scaled it up."""
    shape = (64, 3, 61)
    x0, x1 = rand(shape, 2, torch.float16), rand(shape, 3, torch.float16)
    v = (x1.float() - x0.float() + 0.01 * rand(shape, 1)).half().requires_grad_()
    g = torch.tensor(65536.0, device=DEVICE)
    (got,) = torch.autograd.grad(tri.flow_matching_loss_triton(v, x0, x1), v, g)
    (exp,) = torch.autograd.grad(flow_matching_loss_ref(v, x0, x1), v, g)
    assert_rel_rms(got, exp, REL_RMS_TOL[torch.float16], "fp16 loss-scaled grad")


def test_loss_only_v_requires_grad_and_per_sample_sum_backward():
    """The usual training case (only v needs a gradient), per-sample losses reduced by .sum() (stride-0 cotangent)."""
    shape = (3, 3, 300)
    v = rand(shape, 1, requires_grad=True)
    x0, x1 = rand(shape, 2), rand(shape, 3)
    tri.flow_matching_loss_triton(v, x0, x1, 0.0, "per_sample").sum().backward()
    got = v.grad.clone()
    v.grad = None
    flow_matching_loss_ref(v, x0, x1, 0.0, "per_sample").sum().backward()
    assert_rel_rms(got, v.grad, FP32_TOL, "per-sample .sum() backward")


@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_loss_deterministic(reduction):
    shape = (3, 5, 301)  # several blocks per sample under the interpreter: exercises the two-stage reduction
    v, x0, x1 = (rand(shape, s, requires_grad=True) for s in (1, 2, 3))
    a, ga = loss_and_grads(tri.flow_matching_loss_triton, v, x0, x1, 0.1, reduction)
    b, gb = loss_and_grads(tri.flow_matching_loss_triton, v, x0, x1, 0.1, reduction)
    assert torch.equal(a, b)
    assert all(torch.equal(p, q) for p, q in zip(ga, gb))


def test_loss_eval_mode_writes_no_residual(monkeypatch):
    """Under no_grad (or with nothing requiring grad) the forward must not write the residual."""
    seen = []
    original = tri._loss_forward
    monkeypatch.setattr(tri, "_loss_forward", lambda *a: seen.append(a[-1]) or original(*a))
    shape = (3, 5, 17)
    v, x0, x1 = rand(shape, 1, requires_grad=True), rand(shape, 2), rand(shape, 3)
    with torch.no_grad():
        tri.flow_matching_loss_triton(v, x0, x1)
    tri.flow_matching_loss_triton(v.detach(), x0, x1)
    tri.flow_matching_loss_triton(v, x0, x1)
    assert seen == [False, False, True]


def test_loss_without_grad_skips_residual():
    shape = (3, 5, 17)
    v, x0, x1 = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    loss, resid = tri._loss_forward(v, x0, x1, 0.0, "mean", need_grad=False)
    assert resid.numel() == 0
    assert_rel_rms(loss, flow_matching_loss_ref(v, x0, x1), FP32_TOL, "no-grad loss")
    out = tri.flow_matching_loss_triton(v, x0, x1)
    assert not out.requires_grad
    vg = v.clone().requires_grad_()
    with torch.no_grad():
        assert tri.flow_matching_loss_triton(vg, x0, x1).grad_fn is None
    # with grad: the residual d = v - u is what backward scales
    loss, resid = tri._loss_forward(vg, x0, x1, 0.1, "mean", need_grad=True)
    assert_rel_rms(resid, v - (x1 - 0.9 * x0), FP32_TOL, "residual")


def test_loss_empty_batch():
    z = torch.empty(0, 3, 17, device=DEVICE)
    assert tri.flow_matching_loss_triton(z, z, z, 0.0, "per_sample").shape == (0,)
    assert torch.isnan(tri.flow_matching_loss_triton(z, z, z, 0.0, "mean"))


def test_loss_errors():
    shape = (3, 5, 17)
    v, x0, x1 = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    with pytest.raises(ValueError, match="reduction"):
        tri.flow_matching_loss_triton(v, x0, x1, 0.0, "sum")
    with pytest.raises(ValueError, match="one shape"):
        tri.flow_matching_loss_triton(v, x0[:, :, :4], x1)
    with pytest.raises(TypeError, match="floating"):
        tri.flow_matching_loss_triton(v, x0, x1.to(torch.int64))


# ---------------------------------------------------------------------------------------------- interpolate


def per_sample_t(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, generator=g).to(DEVICE)


@pytest.mark.parametrize("shape", SHAPES)
def test_interpolate_matches_reference(shape):
    x0, x1 = rand(shape, 1), rand(shape, 2)
    t = per_sample_t(shape[0])
    for sigma_min in (0.0, 0.1):
        got = tri.interpolate_triton(x0, x1, t, sigma_min)
        assert got.dtype == x1.dtype and got.is_contiguous()
        assert_rel_rms(got, interpolate_ref(x0, x1, t, sigma_min), FP32_TOL, f"interpolate {shape} s={sigma_min}")


@pytest.mark.parametrize("layouts", [("strided", "strided"), ("channels_last", "contig")])
def test_interpolate_non_contiguous(layouts):
    shape = (3, 5, 299)
    x0, x1 = rand(shape, 1), rand(shape, 2)
    t = per_sample_t(3)
    wide_t = torch.zeros(6, device=DEVICE)
    wide_t[::2] = t
    got = tri.interpolate_triton(relayout(x0, layouts[0]), relayout(x1, layouts[1]), wide_t[::2], 0.1)
    assert_rel_rms(got, interpolate_ref(x0, x1, t, 0.1), FP32_TOL, f"interpolate {layouts}")


@pytest.mark.parametrize("dtypes", [(torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
                                    (torch.float32, torch.bfloat16)])
def test_interpolate_dtypes(dtypes):
    shape = (3, 3, 61)
    x0, x1 = rand(shape, 1, dtypes[0]), rand(shape, 2, dtypes[1])
    t = per_sample_t(3).double()
    got = tri.interpolate_triton(x0, x1, t)
    assert got.dtype == dtypes[1]
    assert_rel_rms(got, interpolate_ref(x0, x1, t), REL_RMS_TOL[dtypes[1]], f"interpolate {dtypes}")


def test_interpolate_autograd():
    shape = (3, 5, 17)
    x0, x1 = rand(shape, 1, requires_grad=True), rand(shape, 2, requires_grad=True)
    t = per_sample_t(3).requires_grad_()
    g = rand(shape, 9)
    got = torch.autograd.grad(tri.interpolate_triton(x0, x1, t, 0.1), (x0, x1, t), g)
    exp = torch.autograd.grad(interpolate_ref(x0, x1, t, 0.1), (x0, x1, t), g)
    for name, a, b in zip(("dx0", "dx1", "dt"), got, exp):
        assert_rel_rms(a, b, FP32_TOL, name)


def test_cost_models():
    n = 2 * 3 * 300
    assert tri.flow_matching_loss_cost(2, 3, 300) == dict(bytes=4 * n * 4 + 4, flops=5 * n)
    assert tri.flow_matching_loss_cost(2, 3, 300, torch.bfloat16, requires_grad=False, reduction="per_sample") == \
        dict(bytes=3 * n * 2 + 8, flops=5 * n)
    assert tri.flow_matching_loss_backward_cost(2, 3, 300, torch.float16) == dict(bytes=2 * n * 2, flops=n)
    assert tri.interpolate_cost(2, 3, 300) == dict(bytes=3 * n * 4 + 8, flops=3 * n)


# ------------------------------------------------------------------------------------- torch.library / compile


def test_custom_ops_callable_and_opcheck():
    shape = (3, 3, 17)
    v, x0 = rand(shape, 1, requires_grad=True), rand(shape, 2, requires_grad=True)
    x1 = rand(shape, 3)
    loss, resid = torch.ops.flowfm.flow_matching_loss_triton(v, x0, x1, 0.1, "per_sample", True)
    g = grad_output(loss, 4)
    got = torch.autograd.grad(loss, (v, x0), g)
    exp = torch.autograd.grad(flow_matching_loss_ref(v, x0, x1, 0.1, "per_sample"), (v, x0), g)
    for a, b in zip(got, exp):
        assert_rel_rms(a, b, FP32_TOL, "op backward")
    torch.library.opcheck(torch.ops.flowfm.flow_matching_loss_triton.default, (v, x0, x1, 0.1, "mean", True))
    torch.library.opcheck(torch.ops.flowfm.fm_loss_scale_grad_triton.default,
                          (resid.detach(), g, 0.5, torch.bfloat16))
    t = per_sample_t(3).requires_grad_()
    torch.library.opcheck(torch.ops.flowfm.interpolate_triton.default, (x0, x1, t, 0.1))


def test_torch_compile_loss_and_backward():
    """torch.compile (aot_eager, fullgraph) traces the custom ops forward and backward."""
    shape = (3, 5, 17)
    W = rand((5, 5), 7, requires_grad=True)
    x0, x1 = rand(shape, 1), rand(shape, 2)
    t = per_sample_t(3)

    def step(interp, loss_fn):
        xt = interp(x0, x1, t, 0.1)
        v = torch.einsum("ij,bjl->bil", W, xt)
        return loss_fn(v, x0, x1, 0.1, "mean")

    compiled = torch.compile(lambda: step(tri.interpolate_triton, tri.flow_matching_loss_triton),
                             backend="aot_eager", fullgraph=True)
    got = compiled()
    (g_got,) = torch.autograd.grad(got, W)
    exp = step(interpolate_ref, flow_matching_loss_ref)
    (g_exp,) = torch.autograd.grad(exp, W)
    assert_rel_rms(got.detach(), exp.detach(), FP32_TOL, "compiled loss")
    assert_rel_rms(g_got, g_exp, FP32_TOL, "compiled grad")


# ------------------------------------------------------------------------------- offline sm_90 compilation

_SM90_SCRIPT = textwrap.dedent("""
    import re, sys
    import triton
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import ASTSource
    except ImportError as exc:
        print("SKIP", exc); sys.exit(0)
    from flowfm_kernels.fm_loss import triton as K

    def ptx(kernel, consts, ones, types={}, num_warps=4):
        fn = kernel
        while not isinstance(fn, triton.runtime.jit.JITFunction):
            fn = fn.fn
        sig, cst, attrs = {}, {}, {}
        for i, name in enumerate(fn.arg_names):
            if name in consts:
                sig[name], cst[name] = "constexpr", consts[name]
            elif name in ones:  # what Triton's runtime does with integer arguments equal to 1
                sig[name], cst[name] = "constexpr", 1
            elif name.endswith("_ptr"):  # torch allocations are 16-byte aligned
                sig[name], attrs[(i,)] = "*" + types.get(name, "fp32"), [["tt.divisibility", 16]]
            else:
                sig[name] = "fp32" if name in ("one_minus_s", "coef", "count") else "i32"
        try:
            src = ASTSource(fn, sig, cst, attrs)
        except TypeError as exc:  # another Triton version's internal API
            print("SKIP", exc); sys.exit(0)
        options = {"num_warps": num_warps}
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]

    # contiguous (B, 3, 300) rows: N = 900 is not a multiple of 16, VEC = 4 must still give 16-byte accesses
    bf16 = dict(v_ptr="bf16", x0_ptr="bf16", x1_ptr="bf16", grad_ptr="bf16")
    cases = {
        "loss": ptx(K._fm_loss_fwd_kernel, dict(BLOCK=2048, FLAT=True, VEC=4, WRITE_GRAD=True, sv2=0, s02=0, s12=0),
                    ("sv1", "s01", "s11"), num_warps=8),
        "loss_bf16_vec8": ptx(K._fm_loss_fwd_kernel, dict(BLOCK=1024, FLAT=True, VEC=8, WRITE_GRAD=True, sv2=0,
                                                          s02=0, s12=0), ("sv1", "s01", "s11"), bf16),
        "loss_channels_last": ptx(K._fm_loss_fwd_kernel, dict(BLOCK=1024, FLAT=False, VEC=4, WRITE_GRAD=False),
                                  ("sv2", "s02", "s12")),
        "sum_rows": ptx(K._sum_rows_kernel, dict(RBLOCK=1024), ()),
        "scale": ptx(K._scale_rows_kernel, dict(BLOCK=1024, VEC=4), ()),
        "interpolate": ptx(K._interpolate_kernel, dict(BLOCK=1024, FLAT=True, VEC=4, s02=0, s12=0),
                           ("s01", "s11", "st")),
    }
    for name, text in cases.items():
        print(name, sorted(set(re.findall(r"(?:ld|st)[.]global[.][a-z0-9.]+", text))))
""")


def test_kernels_lower_to_sm90_with_vector_accesses():
    """Without a GPU: compile the loss / interpolation kernels for sm_90 (Triton's bundled ptxas) and check the PTX
    uses 16-byte accesses for contiguous rows of N = 900. A subprocess, since this process holds interpreted kernels."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", _SM90_SCRIPT], capture_output=True, text=True, cwd=root, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.startswith("SKIP"):
        pytest.skip(f"this Triton's compiler API differs: {result.stdout.strip()}")
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    for name in ("loss", "loss_bf16_vec8", "scale", "interpolate"):
        assert "ld.global.v4.b32" in lines[name], (name, lines[name])
    for name in ("loss", "loss_bf16_vec8", "scale", "interpolate"):
        assert "st.global.v4.b32" in lines[name], (name, lines[name])
    assert "ld.global.v4.b32" not in lines["loss_channels_last"]  # the general path: scalar, but it compiles
    assert "sum_rows" in lines


# ------------------------------------------------------------------------------------------------- GPU only


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1024, 3, 300), (2, 3, 400_000)])
def test_gpu_large(dtype, shape):
    v, x0, x1 = (torch.randn(shape, device="cuda", dtype=dtype).requires_grad_() for _ in range(3))
    for reduction in ("mean", "per_sample"):
        check_against_reference(v, x0, x1, 0.1, reduction, 1e-5, REL_RMS_TOL[dtype], what=f"gpu {shape} {dtype}")
    t = torch.rand(shape[0], device="cuda")
    assert_rel_rms(tri.interpolate_triton(x0.detach(), x1.detach(), t, 0.1),
                   interpolate_ref(x0.detach(), x1.detach(), t, 0.1), REL_RMS_TOL[dtype], "gpu interpolate")


@pytest.mark.gpu
def test_gpu_deterministic():
    v, x0, x1 = (torch.randn(512, 3, 300, device="cuda").requires_grad_() for _ in range(3))
    a, ga = loss_and_grads(tri.flow_matching_loss_triton, v, x0, x1, 0.0, "mean")
    b, gb = loss_and_grads(tri.flow_matching_loss_triton, v, x0, x1, 0.0, "mean")
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(ga, gb))


@pytest.mark.gpu
def test_gpu_torch_compile_inductor():
    shape = (64, 3, 300)
    v = torch.randn(shape, device="cuda", requires_grad=True)
    x0, x1 = torch.randn(shape, device="cuda"), torch.randn(shape, device="cuda")
    compiled = torch.compile(lambda v: tri.flow_matching_loss_triton(v * 2.0, x0, x1), fullgraph=True)
    got = compiled(v)
    (g_got,) = torch.autograd.grad(got, v)
    exp = flow_matching_loss_ref(v * 2.0, x0, x1)
    (g_exp,) = torch.autograd.grad(exp, v)
    assert_rel_rms(got.detach(), exp.detach(), 1e-5, "inductor loss")
    assert_rel_rms(g_got, g_exp, 1e-5, "inductor grad")
