"""Backend dispatcher: FLOWFM_BACKEND / backend=, validation, availability reasons, auto fallback, and the triton
backend (under the interpreter on CPU, compiled on CUDA) agreeing with eager through the public API."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch


import pytest  # noqa: E402

from numerics import REL_RMS_TOL, assert_rel_rms  # noqa: E402

import flowfm_kernels  # noqa: E402
from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels.dispatch import BackendUnavailableError  # noqa: E402
from flowfm_kernels.fm_loss import flow_matching_loss, interpolate  # noqa: E402
from flowfm_kernels.ode_steps import euler_step, guidance_combine, heun_correct, rk4_combine  # noqa: E402

DEVICE = "cpu" if dispatch.triton_interpreting() else "cuda"
OURS = ("flow_matching_loss", "interpolate", "euler_step", "heun_correct", "rk4_combine", "guidance_combine")
HAS_TRITON = dispatch._triton_import_error() is None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
FP32_TOL = REL_RMS_TOL[torch.float32]


def rand(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@pytest.fixture
def fresh_warnings(monkeypatch):
    """An empty warn-once registry, so fallback warnings can be observed."""
    monkeypatch.setattr(dispatch, "_warned", set())


@pytest.fixture
def cuda_module_absent(monkeypatch):
    """Pin the CUDA C++ backend as unavailable, whatever the machine has built."""
    from flowfm_kernels.cuda import loader

    monkeypatch.setattr(loader, "unavailable_reason", lambda: "the CUDA C++ module is not built (test)")


def test_ops_registered():
    for op in OURS + ("conv_block", "gn_film_silu"):
        assert op in dispatch.registered_ops()
        assert set(dispatch._REGISTRY[op]) == {"eager", "triton", "cuda"}
    assert dispatch._REGISTRY["conv_block"]["cuda"] == "flowfm_kernels.conv_block.cuda:conv_block_cuda"


def test_register_validates_notes(monkeypatch):
    monkeypatch.setattr(dispatch, "_REGISTRY", dict(dispatch._REGISTRY))
    with pytest.raises(ValueError, match="tensorrt"):
        dispatch.register("_bad", {"eager": "m:f"}, notes={"tensorrt": "x"})
    with pytest.raises(ValueError, match="eager reference"):
        dispatch.register("_bad", {"cuda": "m:f"})


# ------------------------------------------------------------------------------------------------- explain


def test_explain_matches_resolve_without_raising_or_warning(monkeypatch, fresh_warnings, cuda_module_absent):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = dispatch.explain("euler_step", "cuda", "cuda")
        assert res.backend is None and "not built" in res.reason and res.reason.startswith("unavailable")
        assert "euler_step" in res.error and "euler_step" not in res.reason
        auto = dispatch.explain("euler_step", "auto", torch.device("cuda"))
    with pytest.raises(BackendUnavailableError) as info:
        dispatch.resolve("euler_step", "cuda", "cuda")
    assert str(info.value) == res.error
    if HAS_TRITON:
        assert auto.backend == "triton" and [b for b, _ in auto.skipped] == ["cuda"]
        assert "cuda > triton > eager" in auto.reason and "not built" in auto.reason
        with pytest.warns(RuntimeWarning, match="not built"):  # resolve warns about exactly what explain skipped
            assert dispatch.resolve("euler_step", "auto", torch.device("cuda")) == auto.backend
    cpu = dispatch.explain("conv_block", "triton", "cpu")
    assert cpu.backend is None and "TRITON_INTERPRET" in cpu.reason
    assert dispatch.explain("conv_block", None, "cpu").backend == "eager"


def test_conv_block_cuda_order_and_note(monkeypatch, fresh_warnings):
    """auto on CUDA: triton first for the conv block (an expectation until measured on a GPU), then the CUDA C++
    epilogue behind cuDNN's conv, which an explicit 'cuda' request gets (and says so)."""
    assert dispatch.cuda_preference("conv_block") == ("triton", "cuda", "eager")
    monkeypatch.setattr(dispatch, "backend_unavailable_reason",
                        lambda backend, device="cpu": "no triton (test)" if backend == "triton" else None)
    with pytest.warns(RuntimeWarning, match="no triton"):
        assert dispatch.resolve("conv_block", "auto", torch.device("cuda")) == "cuda"
    res = dispatch.explain("conv_block", "cuda", "cuda")
    assert res.backend == "cuda" and res.reason == "requested" and "cuDNN" in res.note
    assert dispatch.explain("euler_step", "cuda", "cuda").note is None
    assert dispatch.implementation("conv_block", "cuda", "cuda").__name__ == "conv_block_cuda"


def test_explain_all_covers_every_op_and_request():
    rows = dispatch.explain_all("cpu")
    assert {(r.op, r.request) for r in rows} == {(op, q) for op in dispatch.registered_ops()
                                                 for q in ("auto", "eager", "triton", "cuda")}
    assert all(r.backend == "eager" for r in rows if r.request in ("auto", "eager"))


# ------------------------------------------------------------------------------------- request validation


def test_env_var_honoured(monkeypatch):
    monkeypatch.setenv("FLOWFM_BACKEND", "eager")
    assert dispatch.requested_backend() == "eager"
    assert dispatch.resolve("euler_step", None, "cpu") == "eager"
    monkeypatch.setenv("FLOWFM_BACKEND", " Eager ")  # case and surrounding blanks are forgiven
    assert dispatch.requested_backend() == "eager"
    monkeypatch.delenv("FLOWFM_BACKEND")
    assert dispatch.requested_backend() == "auto"


@needs_triton
def test_env_var_selects_triton_and_argument_wins(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("FLOWFM_BACKEND", "triton")
    assert dispatch.resolve("flow_matching_loss", None, "cpu") == "triton"
    fn = dispatch.implementation("flow_matching_loss", None, "cpu")
    assert fn.__module__ == "flowfm_kernels.fm_loss.triton" and fn.__name__ == "flow_matching_loss_triton"
    assert dispatch.resolve("flow_matching_loss", "eager", "cpu") == "eager"  # explicit argument beats the env var
    monkeypatch.setenv("FLOWFM_BACKEND", "eager")
    assert dispatch.resolve("euler_step", "triton", "cpu") == "triton"


@pytest.mark.parametrize("via", ["argument", "env"])
def test_unknown_backend_names_the_valid_ones(monkeypatch, via):
    if via == "env":
        monkeypatch.setenv("FLOWFM_BACKEND", "tensorrt")
        request = None
    else:
        request = "tensorrt"
    with pytest.raises(ValueError) as info:
        dispatch.resolve("euler_step", request, "cpu")
    message = str(info.value)
    assert "tensorrt" in message
    for name in ("auto", "eager", "triton", "cuda"):
        assert repr(name) in message
    x = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="not a backend"):
        euler_step(x, x, torch.ones(2), backend=request)


# ----------------------------------------------------------------------------------------------- availability


@pytest.mark.parametrize("op", OURS)
def test_explicit_triton_on_cpu_without_interpreter_raises(monkeypatch, op):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # dispatch reads it at call time
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET") as info:
        dispatch.resolve(op, "triton", "cpu")
    assert op in str(info.value)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="CUDA tensor"):
        dispatch.resolve(op, "triton", torch.device("cpu"))


def test_explicit_triton_through_public_api_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.randn(2, 3, 5)
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET"):
        flow_matching_loss(x, x, x, backend="triton")
    monkeypatch.setenv("FLOWFM_BACKEND", "triton")  # an explicit request through the env var is explicit too
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET"):
        euler_step(x, x, torch.ones(2))


def test_triton_kernels_refuse_cpu_tensors_without_interpreter(monkeypatch):
    """Called directly (bypassing dispatch), the kernels still raise the same clear error."""
    pytest.importorskip("triton")
    from flowfm_kernels.ode_steps import triton as tri

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.randn(2, 3, 5)
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET"):
        tri.euler_step_triton(x, x, torch.ones(2))


def test_cuda_backend_on_cpu_raises():
    with pytest.raises(BackendUnavailableError, match="cuda"):
        dispatch.resolve("euler_step", "cuda", "cpu")


def test_triton_missing_is_reported(monkeypatch, fresh_warnings, cuda_module_absent):
    monkeypatch.setattr(dispatch, "_triton_import_error", lambda: "the 'triton' package is not installed (test)")
    with pytest.raises(BackendUnavailableError, match="not installed"):
        dispatch.resolve("euler_step", "triton", "cuda")
    with pytest.warns(RuntimeWarning) as record:
        assert dispatch.resolve("euler_step", "auto", torch.device("cuda")) == "eager"
    messages = [str(w.message) for w in record]
    assert any("'cuda'" in m and "not built" in m for m in messages)
    assert any("'triton'" in m and "not installed" in m for m in messages)
    assert dispatch.available_backends("cpu")["triton"] == "the 'triton' package is not installed (test)"


# ---------------------------------------------------------------------------------------------------- auto


@pytest.mark.parametrize("op", OURS)
def test_auto_on_cpu_is_eager_without_warning(monkeypatch, op):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # even with the interpreter on, auto never picks it on CPU
    monkeypatch.setenv("FLOWFM_BACKEND", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.resolve(op, None, "cpu") == "eager"
        assert dispatch.resolve(op, "auto", "cpu") == "eager"


@needs_triton
def test_auto_on_cuda_falls_back_with_one_warning(fresh_warnings, cuda_module_absent):
    """No GPU needed: resolving for a CUDA device only consults availability."""
    with pytest.warns(RuntimeWarning, match="not built"):
        assert dispatch.resolve("flow_matching_loss", "auto", torch.device("cuda")) == "triton"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per (op, backend)
        assert dispatch.resolve("flow_matching_loss", "auto", torch.device("cuda")) == "triton"


@needs_triton
def test_available_backends_under_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    avail = dispatch.available_backends("cpu")
    assert avail["eager"] is None and avail["triton"] is None and avail["cuda"]


def test_importing_flowfm_kernels_does_not_import_triton():
    root = Path(__file__).resolve().parents[1]
    code = "import sys, flowfm_kernels; assert 'triton' not in sys.modules, 'triton imported'; print('ok')"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env,
                            timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


# ------------------------------------------------------------------------------- triton == eager via public API


@needs_triton
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_triton_equals_eager_loss(reduction):
    shape = (3, 5, 301)
    v = rand(shape, 1).requires_grad_()
    x0, x1 = rand(shape, 2), rand(shape, 3)
    results = {}
    for backend in ("eager", "triton"):
        loss = flow_matching_loss(v, x0, x1, 0.1, reduction, backend=backend)
        (grad,) = torch.autograd.grad(loss.sum() * 1.5, v)
        results[backend] = (loss.detach(), grad)
    assert_rel_rms(results["triton"][0], results["eager"][0], FP32_TOL, "loss")
    assert_rel_rms(results["triton"][1], results["eager"][1], FP32_TOL, "grad")
    t = rand((3,), 4).abs()
    assert_rel_rms(interpolate(x0, x1, t, 0.1, backend="triton"), interpolate(x0, x1, t, 0.1, backend="eager"),
                   FP32_TOL, "interpolate")


@needs_triton
def test_triton_equals_eager_steps(monkeypatch):
    shape = (3, 3, 299)
    x, v1, v2, n1, n2 = (rand(shape, s) for s in range(5))
    dt = torch.tensor([0.1, -0.25, 0.5], device=DEVICE)
    calls = {
        "euler": lambda b, out: euler_step(x, v1, dt, out, n1, 2.5, backend=b),
        "heun": lambda b, out: heun_correct(x, v1, v2, dt, out, n1, n2, 2.5, backend=b),
        "rk4": lambda b, out: rk4_combine(x, v1, v2, n1, n2, dt, out, backend=b),
        "guidance": lambda b, out: guidance_combine(v1, n1, 2.5, out, backend=b),
    }
    for name, call in calls.items():
        expected = call("eager", None)
        assert_rel_rms(call("triton", None), expected, FP32_TOL, name)
        out = torch.full(shape, float("nan"), device=DEVICE)
        assert call("triton", out) is out
        assert_rel_rms(out, expected, FP32_TOL, f"{name} into out")
    # FLOWFM_BACKEND=triton routes the same calls through the kernels
    monkeypatch.setenv("FLOWFM_BACKEND", "triton")
    xi = x.clone()
    euler_step(xi, v1, dt, xi)
    assert_rel_rms(xi, euler_step(x, v1, dt, backend="eager"), FP32_TOL, "env triton in place")


def test_package_exports():
    for name in ("flow_matching_loss", "interpolate", "euler_step", "heun_correct", "rk4_combine", "guidance_combine",
                 "BackendUnavailableError", "available_backends"):
        assert hasattr(flowfm_kernels, name)
