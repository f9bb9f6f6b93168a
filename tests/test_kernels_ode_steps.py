"""Triton ODE-step kernels (Euler / Heun / RK4 / guidance combine) against the eager references.

Without CUDA the kernels run on CPU tensors through the Triton interpreter (``TRITON_INTERPRET=1``, set by conftest.py before
anything imports Triton); with CUDA the same tests run the compiled kernels on the GPU, plus the ``gpu``-marked ones.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch


import pytest  # noqa: E402

pytest.importorskip("triton")

from numerics import REL_RMS_TOL, assert_rel_rms, nan_poisoned_like, non_contiguous  # noqa: E402

from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels.ode_steps import reference as ref  # noqa: E402
from flowfm_kernels.ode_steps import triton as tri  # noqa: E402

DEVICE = "cpu" if dispatch.triton_interpreting() else "cuda"
SHAPES = [(1, 3, 1), (3, 5, 17), (3, 3, 299), (1, 3, 300), (3, 5, 301)]
FP32_TOL = REL_RMS_TOL[torch.float32]


def rand(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device=DEVICE, dtype=dtype)


def per_sample_dt(B, seed=0):
    """Step sizes that differ across the batch (and include a negative one when B > 1)."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.rand(B, generator=g) * 0.5 + 0.05
    if B > 1:
        dt[1] = -dt[1]
    return dt.to(DEVICE)


def relayout(t, layout):
    """Same values, other memory layout: contiguous, strided rows (non_contiguous) or channels-last (non-flat rows)."""
    if layout == "contig":
        return t.contiguous()
    if layout == "strided":
        return non_contiguous(t)
    if layout == "channels_last":
        B, C, L = t.shape
        out = torch.empty(B, L, C, dtype=t.dtype, device=t.device).transpose(1, 2)
        out.copy_(t)
        return out
    raise ValueError(layout)


def make_out(x, mode):
    """(out argument, tensor to read the result from) for out=None, a NaN-poisoned buffer, or in place (out is x)."""
    if mode == "none":
        return None
    if mode == "poisoned":
        return nan_poisoned_like(x)
    if mode == "inplace":
        return x
    raise ValueError(mode)


# ------------------------------------------------------------------------------------------------------ euler


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("guide", ["none", "null_w1", "null_w2.5"])
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_euler_matches_reference(shape, guide, out_mode):
    x, v, vn = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    dt = per_sample_dt(shape[0])
    v_null = None if guide == "none" else vn
    w = 2.5 if guide == "null_w2.5" else 1.0
    expected = ref.euler_step_ref(x, v, dt, None, v_null, w)
    x_in = x.clone()
    out = make_out(x_in, out_mode)
    got = tri.euler_step_triton(x_in, v, dt, out, v_null, w)
    if out is not None:
        assert got is out
    assert got.dtype == x.dtype
    assert_rel_rms(got, expected, FP32_TOL, f"euler {shape} {guide} {out_mode}")
    if out_mode != "inplace":
        assert torch.equal(x_in, x), "input x modified although out is not x"


# ------------------------------------------------------------------------------------------------------- heun


@pytest.mark.parametrize("shape", [(1, 3, 1), (3, 5, 17), (3, 3, 300)])
@pytest.mark.parametrize("nulls,w", [((False, False), 1.0), ((True, False), 2.5), ((False, True), 2.5),
                                     ((True, True), 2.5), ((True, True), 1.0)])
@pytest.mark.parametrize("out_mode", ["poisoned", "inplace"])
def test_heun_matches_reference(shape, nulls, w, out_mode):
    x, v1, v2 = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    n1 = rand(shape, 4) if nulls[0] else None
    n2 = rand(shape, 5) if nulls[1] else None
    dt = per_sample_dt(shape[0], seed=7)
    expected = ref.heun_correct_ref(x, v1, v2, dt, None, n1, n2, w)
    x_in = x.clone()
    got = tri.heun_correct_triton(x_in, v1, v2, dt, make_out(x_in, out_mode), n1, n2, w)
    assert_rel_rms(got, expected, FP32_TOL, f"heun {shape} {nulls} w={w} {out_mode}")


def test_heun_out_none_allocates_in_x_dtype():
    shape = (3, 5, 17)
    x, v1, v2 = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    dt = per_sample_dt(3)
    got = tri.heun_correct_triton(x, v1, v2, dt)
    assert got.dtype == x.dtype and got.is_contiguous() and got.data_ptr() != x.data_ptr()
    assert_rel_rms(got, ref.heun_correct_ref(x, v1, v2, dt), FP32_TOL, "heun out=None")


# -------------------------------------------------------------------------------------------------------- rk4


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_rk4_matches_reference(shape, out_mode):
    x = rand(shape, 1)
    ks = [rand(shape, 10 + i) for i in range(4)]
    dt = per_sample_dt(shape[0], seed=3)
    expected = ref.rk4_combine_ref(x, *ks, dt)
    x_in = x.clone()
    got = tri.rk4_combine_triton(x_in, *ks, dt, make_out(x_in, out_mode))
    assert_rel_rms(got, expected, FP32_TOL, f"rk4 {shape} {out_mode}")


# ------------------------------------------------------------------------------------------- guidance combine


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("w", [1.0, 2.5])
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_guidance_combine_matches_reference(shape, w, out_mode):
    v, vn = rand(shape, 1), rand(shape, 2)
    expected = ref.guidance_combine_ref(v, vn, w)
    v_in = v.clone()
    got = tri.guidance_combine_triton(v_in, vn, w, make_out(v_in, out_mode))
    assert got.dtype == v.dtype
    assert_rel_rms(got, expected, FP32_TOL, f"guidance {shape} w={w} {out_mode}")


# ---------------------------------------------------------------------------------------- layouts and dtypes


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
@pytest.mark.parametrize("shape", [(3, 3, 101), (1, 5, 17)])
def test_non_contiguous_inputs_and_outputs(layout, shape):
    """Every operand (and out) non-contiguous: strided rows take the flat path, channels-last the general one."""
    x, v, vn = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    ks = [rand(shape, 10 + i) for i in range(4)]
    dt = per_sample_dt(shape[0])
    X, V, VN = (relayout(t, layout) for t in (x, v, vn))
    KS = [relayout(k, layout) for k in ks]

    out = relayout(nan_poisoned_like(x), layout)
    tri.euler_step_triton(X, V, dt, out, VN, 2.5)
    assert_rel_rms(out, ref.euler_step_ref(x, v, dt, None, vn, 2.5), FP32_TOL, f"euler {layout}")

    out = relayout(nan_poisoned_like(x), layout)
    tri.heun_correct_triton(X, V, VN, dt, out, VN, None, 2.5)
    assert_rel_rms(out, ref.heun_correct_ref(x, v, vn, dt, None, vn, None, 2.5), FP32_TOL, f"heun {layout}")

    out = relayout(nan_poisoned_like(x), layout)
    tri.rk4_combine_triton(X, *KS, dt, out)
    assert_rel_rms(out, ref.rk4_combine_ref(x, *ks, dt), FP32_TOL, f"rk4 {layout}")

    out = relayout(nan_poisoned_like(x), layout)
    tri.guidance_combine_triton(V, VN, 2.5, out)
    assert_rel_rms(out, ref.guidance_combine_ref(v, vn, 2.5), FP32_TOL, f"guidance {layout}")

    # in place into a non-contiguous x, with inputs of a different layout
    X2 = relayout(x, layout)
    tri.euler_step_triton(X2, v, dt, X2, vn, 2.5)
    assert_rel_rms(X2, ref.euler_step_ref(x, v, dt, None, vn, 2.5), FP32_TOL, f"euler in place {layout}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    shape = (3, 5, 61)
    x, v, vn = rand(shape, 1, dtype), rand(shape, 2, dtype), rand(shape, 3, dtype)
    ks = [rand(shape, 10 + i, dtype) for i in range(4)]
    dt = per_sample_dt(3)
    tol = REL_RMS_TOL[dtype]
    cases = [
        ("euler", lambda o: tri.euler_step_triton(x, v, dt, o, vn, 2.5), ref.euler_step_ref(x, v, dt, None, vn, 2.5)),
        ("heun", lambda o: tri.heun_correct_triton(x, v, vn, dt, o, vn, v, 2.5),
         ref.heun_correct_ref(x, v, vn, dt, None, vn, v, 2.5)),
        ("rk4", lambda o: tri.rk4_combine_triton(x, *ks, dt, o), ref.rk4_combine_ref(x, *ks, dt)),
        ("guidance", lambda o: tri.guidance_combine_triton(v, vn, 2.5, o), ref.guidance_combine_ref(v, vn, 2.5)),
    ]
    for name, fn, expected in cases:
        got = fn(nan_poisoned_like(x))
        assert got.dtype == dtype
        assert_rel_rms(got, expected, tol, f"{name} {dtype}")
        assert_rel_rms(fn(None), expected, tol, f"{name} {dtype} out=None")


def test_mixed_dtypes_and_out_dtype():
    """fp32 state, bf16 velocities, fp32 math inside; a given out keeps its own dtype like the reference's copy_."""
    shape = (3, 3, 17)
    x, v, vn = rand(shape, 1), rand(shape, 2, torch.bfloat16), rand(shape, 3, torch.bfloat16)
    dt = per_sample_dt(3)
    expected = ref.euler_step_ref(x, v, dt, None, vn, 2.5)
    got = tri.euler_step_triton(x, v, dt, None, vn, 2.5)
    assert got.dtype == torch.float32
    assert_rel_rms(got, expected, FP32_TOL, "mixed dtypes")
    out16 = torch.full(shape, float("nan"), dtype=torch.float16, device=DEVICE)
    tri.euler_step_triton(x, v, dt, out16, vn, 2.5)
    assert_rel_rms(out16, expected, REL_RMS_TOL[torch.float16], "fp16 out")


def test_dt_forms():
    """dt as fp64, as a strided view, as a 0-d tensor and as a Python number."""
    shape = (3, 5, 17)
    x, v = rand(shape, 1), rand(shape, 2)
    dt = per_sample_dt(3)
    expected = ref.euler_step_ref(x, v, dt)
    assert_rel_rms(tri.euler_step_triton(x, v, dt.double()), expected, FP32_TOL, "fp64 dt")
    wide = torch.zeros(6, device=DEVICE)
    wide[::2] = dt
    assert_rel_rms(tri.euler_step_triton(x, v, wide[::2]), expected, FP32_TOL, "strided dt")
    scalar = torch.tensor(0.125, device=DEVICE)
    expected = ref.euler_step_ref(x, v, torch.full((3,), 0.125, device=DEVICE))
    assert_rel_rms(tri.euler_step_triton(x, v, scalar), expected, FP32_TOL, "0-d dt")
    assert_rel_rms(tri.euler_step_triton(x, v, 0.125), expected, FP32_TOL, "float dt")


def test_guidance_one_skips_null_but_matches():
    """With w = 1 the null velocity is not read (poison it: the result stays finite and equals x + dt v)."""
    shape = (3, 3, 17)
    x, v = rand(shape, 1), rand(shape, 2)
    dt = per_sample_dt(3)
    poisoned_null = torch.full(shape, float("nan"), device=DEVICE)
    got = tri.euler_step_triton(x, v, dt, None, poisoned_null, 1.0)
    assert_rel_rms(got, ref.euler_step_ref(x, v, dt), FP32_TOL, "w=1 ignores v_null")


def test_euler_chain_in_place_matches_reference_loop():
    """A 4-step guided Euler integration in place equals the reference loop."""
    shape = (3, 3, 300)
    x = rand(shape, 1)
    xr = x.clone()
    dt = per_sample_dt(3).abs() / 4
    for k in range(4):
        v, vn = rand(shape, 20 + k), rand(shape, 40 + k)
        tri.euler_step_triton(x, v, dt, x, vn, 2.5)
        xr = ref.euler_step_ref(xr, v, dt, None, vn, 2.5)
    assert_rel_rms(x, xr, FP32_TOL, "in-place chain")


def test_empty_batch():
    x = torch.empty(0, 3, 17, device=DEVICE)
    assert tri.euler_step_triton(x, x.clone(), torch.empty(0, device=DEVICE)).shape == (0, 3, 17)


# ---------------------------------------------------------------------------------------------------- errors


def test_errors():
    shape = (3, 3, 17)
    x, v = rand(shape, 1), rand(shape, 2)
    dt = per_sample_dt(3)
    with pytest.raises(ValueError, match="shape"):
        tri.euler_step_triton(x, v[:, :, :5], dt)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        tri.euler_step_triton(x, v, dt[:2])
    with pytest.raises(TypeError, match="floating"):
        tri.euler_step_triton(x, v.to(torch.int32), dt)
    wide = torch.zeros(3, 3, 18, device=DEVICE)
    xs = wide[:, :, 1:]
    xs.copy_(x)
    with pytest.raises(ValueError, match="overlap"):
        tri.euler_step_triton(xs, v, dt, wide[:, :, :17])  # out shifted by one element against x
    with pytest.raises(ValueError, match="internal overlap"):
        tri.euler_step_triton(x, v, dt, torch.zeros(1, 3, 17, device=DEVICE).expand(3, 3, 17))
    with pytest.raises(ValueError, match="v_null"):
        tri.guidance_combine_triton(v, None, 2.0)


def test_cost_models():
    n = 2 * 3 * 300
    assert tri.euler_step_cost(2, 3, 300) == dict(bytes=3 * n * 4 + 8, flops=2 * n)
    assert tri.euler_step_cost(2, 3, 300, torch.bfloat16, guided=True) == dict(bytes=4 * n * 2 + 8, flops=5 * n)
    assert tri.heun_correct_cost(2, 3, 300, guided=True)["bytes"] == 6 * n * 4 + 8
    assert tri.rk4_combine_cost(2, 3, 300, torch.float16) == dict(bytes=6 * n * 2 + 8, flops=7 * n)
    assert tri.guidance_combine_cost(2, 3, 300) == dict(bytes=3 * n * 4, flops=3 * n)


# ------------------------------------------------------------------------------------- torch.library / compile


def test_custom_ops_registered_and_opcheck():
    shape = (3, 3, 17)
    x, v, vn = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    dt = per_sample_dt(3)
    ops = torch.ops.flowfm
    xi = x.clone()
    cases = [
        (ops.euler_step_triton.default, (x, v, dt, torch.empty_like(x), vn, 2.5)),
        (ops.euler_step_triton.default, (xi, v, dt, xi, None, 1.0)),  # in place: out is x
        (ops.heun_correct_triton.default, (x, v, vn, dt, torch.empty_like(x), vn, None, 2.5)),
        (ops.rk4_combine_triton.default, (x, v, vn, v, vn, dt, torch.empty_like(x))),
        (ops.guidance_combine_triton.default, (v, vn, 2.5, torch.empty_like(v))),
    ]
    for i, (op, args) in enumerate(cases):
        if i < 3:  # the full check, AOT dispatch included
            torch.library.opcheck(op, args)
        else:  # same schema pattern: schema and fake kernel suffice
            torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration",
                                                        "test_faketensor"))
    # the op called directly mutates out
    out = nan_poisoned_like(x)
    ops.euler_step_triton(x, v, dt, out, vn, 2.5)
    assert_rel_rms(out, ref.euler_step_ref(x, v, dt, None, vn, 2.5), FP32_TOL, "op call")


def test_torch_compile_heun_loop_in_place():
    """torch.compile (aot_eager, fullgraph) traces the mutating custom ops; in-place semantics survive."""
    shape = (3, 3, 17)
    x0 = rand(shape, 1)
    W = rand((3, 3), 5) * 0.3
    dt = per_sample_dt(3).abs() / 3

    def velocity(x):
        return torch.einsum("ij,bjl->bil", W, x)

    def heun(x, step, euler, correct):
        x = x.clone()
        for _ in range(3):
            v1 = velocity(x)
            xp = euler(x, v1, dt)
            v2 = velocity(xp)
            correct(x, v1, v2, dt, x)
        return x

    expected = heun(x0, 0, ref.euler_step_ref, ref.heun_correct_ref)
    compiled = torch.compile(lambda x: heun(x, 0, tri.euler_step_triton, tri.heun_correct_triton),
                             backend="aot_eager", fullgraph=True)
    assert_rel_rms(compiled(x0), expected, FP32_TOL, "compiled heun")


# ------------------------------------------------------------------------------- offline sm_90 compilation

_SM90_SCRIPT = textwrap.dedent("""
    import re, sys
    import triton
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import ASTSource
    except ImportError as exc:
        print("SKIP", exc); sys.exit(0)
    from flowfm_kernels.ode_steps import triton as K

    def ptx(kernel, consts, ones, types={}):
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
                sig[name] = "fp32" if name == "w" else "i32"
        try:
            src = ASTSource(fn, sig, cst, attrs)
        except TypeError as exc:  # another Triton version's internal API
            print("SKIP", exc); sys.exit(0)
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["ptx"]

    # contiguous (B, 3, 300) rows: N = 900 is not a multiple of 16, VEC = 4 must still give 16-byte accesses
    flat = dict(BLOCK=1024, FLAT=True, VEC=4)
    cases = {
        "euler": ptx(K._euler_kernel, dict(flat, HAS_NULL=True, sx2=0, sv2=0, sn2=0, so2=0),
                     ("sx1", "sv1", "sn1", "so1", "sdt")),
        "heun": ptx(K._heun_kernel, dict(flat, HAS_NULL1=True, HAS_NULL2=False, sx2=0, s12=0, s22=0, sn12=0,
                                         sn22=0, so2=0), ("sx1", "s11", "s21", "sn11", "sn21", "so1", "sdt")),
        "rk4": ptx(K._rk4_kernel, dict(flat, sx2=0, s12=0, s22=0, s32=0, s42=0, so2=0),
                   ("sx1", "s11", "s21", "s31", "s41", "so1", "sdt")),
        "guidance_bf16": ptx(K._guidance_kernel, dict(BLOCK=1024, FLAT=True, VEC=8, sv2=0, sn2=0, so2=0),
                             ("sv1", "sn1", "so1"), dict(v_ptr="bf16", vn_ptr="bf16", out_ptr="bf16")),
        "euler_channels_last": ptx(K._euler_kernel, dict(BLOCK=1024, FLAT=False, VEC=4, HAS_NULL=False),
                                   ("sx2", "sv2", "sn2", "so2", "sdt")),
    }
    for name, text in cases.items():
        print(name, sorted(set(re.findall(r"(?:ld|st)[.]global[.][a-z0-9.]+", text))))
""")


def test_kernels_lower_to_sm90_with_vector_accesses():
    """Without a GPU: compile the step kernels for sm_90 (Triton's bundled ptxas) and check the PTX uses 16-byte
    loads/stores for contiguous rows of N = 900. Runs in a subprocess, since this process holds interpreted kernels."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", _SM90_SCRIPT], capture_output=True, text=True, cwd=root, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.startswith("SKIP"):
        pytest.skip(f"this Triton's compiler API differs: {result.stdout.strip()}")
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    for name in ("euler", "heun", "rk4", "guidance_bf16"):
        assert "ld.global.v4.b32" in lines[name] and "st.global.v4.b32" in lines[name], (name, lines[name])
    assert "ld.global.v4.b32" not in lines["euler_channels_last"]  # the general path: scalar, but it compiles


# ------------------------------------------------------------------------------------------------- GPU only


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_large(dtype):
    shape = (512, 3, 300)
    x, v, vn = (torch.randn(shape, device="cuda", dtype=dtype) for _ in range(3))
    ks = [torch.randn(shape, device="cuda", dtype=dtype) for _ in range(4)]
    dt = torch.rand(512, device="cuda")
    tol = REL_RMS_TOL[dtype]
    assert_rel_rms(tri.euler_step_triton(x, v, dt, None, vn, 2.5), ref.euler_step_ref(x, v, dt, None, vn, 2.5), tol)
    assert_rel_rms(tri.heun_correct_triton(x, v, vn, dt, None, vn, v, 2.5),
                   ref.heun_correct_ref(x, v, vn, dt, None, vn, v, 2.5), tol)
    assert_rel_rms(tri.rk4_combine_triton(x, *ks, dt), ref.rk4_combine_ref(x, *ks, dt), tol)
    assert_rel_rms(tri.guidance_combine_triton(v, vn, 2.5), ref.guidance_combine_ref(v, vn, 2.5), tol)


@pytest.mark.gpu
def test_gpu_in_place_first_call_autotunes_safely():
    """The autotuner benchmarks on the first call for a new key: with out = x it must restore x between runs."""
    shape = (37, 5, 1111)  # a shape no other test uses: a fresh autotune key
    x = torch.randn(shape, device="cuda")
    v = torch.randn(shape, device="cuda")
    dt = torch.rand(37, device="cuda")
    expected = ref.euler_step_ref(x, v, dt)
    tri.euler_step_triton(x, v, dt, x)
    assert_rel_rms(x, expected, FP32_TOL, "in place during autotuning")


@pytest.mark.gpu
def test_gpu_cuda_graph_capture():
    """After a warm-up call (autotuning done), a captured in-place Euler step replays correctly."""
    shape = (64, 3, 300)
    x = torch.randn(shape, device="cuda")
    v = torch.randn(shape, device="cuda")
    dt = torch.full((64,), 0.1, device="cuda")
    x_static = x.clone()
    tri.euler_step_triton(x_static, v, dt, x_static, v, 2.0)  # warm-up: compile + autotune outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        tri.euler_step_triton(x_static, v, dt, x_static, v, 2.0)
    x_static.copy_(x)
    graph.replay()
    graph.replay()
    expected = ref.euler_step_ref(ref.euler_step_ref(x, v, dt, None, v, 2.0), v, dt, None, v, 2.0)
    torch.cuda.synchronize()
    assert_rel_rms(x_static, expected, FP32_TOL, "graph replay")
