"""Tests of the CUDA C++ backend: csrc/ kernels, the flowfm_kernels._C / CuPy-JIT loader, the ops, the build logic.

CPU-runnable (no GPU):
* loader failure paths and the dispatcher's fallbacks on a mocked CUDA device;
* setup.py's decisions (flowfm_kernels/cuda/_build.py) as pure functions with monkeypatched environments;
* the launch plans, and (when flowfm_kernels._C is built) that _C and its CuPy JIT twin expose the same API and plans;
* the kernels themselves, through a CPU emulation of CUDA (csrc/testing/cpu_emulation.*: every CUDA thread an OS
  thread, real barriers and warp shuffles) driven by the real JIT launcher and the real ops: numerics against the
  eager references, odd sizes, fused and split GroupNorm paths, NaN-poisoned outputs, in-place steps, gradients,
  determinism. Needs g++ (C++20) and the CUDA headers; skipped otherwise.

GPU (``@pytest.mark.gpu``, skipped without CUDA): the same op checks on the device, once through the compiled
extension (FLOWFM_CUDA_IMPL=ext) and once through the CuPy/NVRTC JIT build (FLOWFM_CUDA_IMPL=jit).
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

from flowfm_kernels import dispatch
from flowfm_kernels.conv_block.cuda import conv_block_cuda
from flowfm_kernels.cuda import _build, _cupy_jit, launch, loader
from flowfm_kernels.fm_loss.cuda import flow_matching_loss_cuda, interpolate_cuda
from flowfm_kernels.gn_film_silu.cuda import gn_film_silu_cuda
from flowfm_kernels.ode_steps.cuda import euler_step_cuda, guidance_combine_cuda, heun_correct_cuda, rk4_combine_cuda
from flowfm_kernels.fm_loss.reference import flow_matching_loss_ref, interpolate_ref
from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref
from flowfm_kernels.ode_steps.reference import (euler_step_ref, guidance_combine_ref, heun_correct_ref,
                                                rk4_combine_ref)
from tests.cuda_emulation import EmuCupy, EmuKernels, emu_lib, emulated_module  # noqa: F401 (emu_lib: a fixture)
from tests.numerics import REL_RMS_TOL, assert_rel_rms, nan_poisoned_like, non_contiguous

REPO = Path(__file__).resolve().parents[1]
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _ext_importable() -> bool:
    try:
        import flowfm_kernels._C  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


# ================================================================================================== loader
@pytest.fixture
def fresh_loader():
    loader.clear_cache()
    yield
    loader.clear_cache()


@pytest.fixture
def pretend_gpu(monkeypatch, fresh_loader):
    """torch 'sees' a GPU; whatever the loader then tries is real (or mocked by the test)."""
    monkeypatch.setattr(loader, "gpu_unavailable_reason", lambda: None)


def _hide_module(monkeypatch, name: str) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_no_gpu_reason_mentions_gpu(monkeypatch, fresh_loader):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reason = loader.unavailable_reason()
    assert reason and "GPU" in reason
    assert "\n" not in reason
    with pytest.raises(loader.CudaKernelsUnavailable, match="GPU"):
        loader.get_module()
    assert loader.implementation() is None


def test_ext_and_cupy_missing_reason_names_both(monkeypatch, pretend_gpu):
    _hide_module(monkeypatch, "flowfm_kernels._C")
    _hide_module(monkeypatch, "cupy")
    reason = loader.unavailable_reason()
    assert reason is not None and "\n" not in reason
    assert "flowfm_kernels._C" in reason and "FLOWFM_BUILD_CUDA=1" in reason
    assert "cupy" in reason and "cupy-cuda13x" in reason


def test_forced_impl_reports_only_that_path(monkeypatch, pretend_gpu):
    _hide_module(monkeypatch, "flowfm_kernels._C")
    _hide_module(monkeypatch, "cupy")
    monkeypatch.setenv(loader.IMPL_ENV, "ext")
    reason = loader.unavailable_reason()
    assert "flowfm_kernels._C" in reason and "cupy" not in reason and "FLOWFM_CUDA_IMPL=ext" in reason
    monkeypatch.setenv(loader.IMPL_ENV, "jit")
    reason = loader.unavailable_reason()
    assert "cupy" in reason and "flowfm_kernels._C" not in reason
    monkeypatch.setenv(loader.IMPL_ENV, "bogus")
    assert "FLOWFM_CUDA_IMPL" in loader.unavailable_reason()


def test_ext_that_cannot_reach_the_gpu_falls_through(monkeypatch, pretend_gpu):
    """An importable _C whose runtime fails (e.g. an old driver) is reported, then the JIT path is tried."""
    broken = SimpleNamespace(current_device_sm_count=lambda: (_ for _ in ()).throw(
        RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")))
    monkeypatch.setitem(sys.modules, "flowfm_kernels._C", broken)
    _hide_module(monkeypatch, "cupy")
    reason = loader.unavailable_reason()
    assert "cannot use the GPU" in reason and "InsufficientDriver" in reason and "cupy" in reason


def test_working_ext_is_selected(monkeypatch, pretend_gpu):
    fake = SimpleNamespace(current_device_sm_count=lambda: 132, IMPLEMENTATION="ext")
    monkeypatch.setitem(sys.modules, "flowfm_kernels._C", fake)
    assert loader.unavailable_reason() is None
    assert loader.get_module() is fake and loader.implementation() == "ext"


def test_jit_without_sources_reports_where_it_looked(monkeypatch, pretend_gpu, tmp_path):
    _hide_module(monkeypatch, "flowfm_kernels._C")
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace())
    monkeypatch.setattr(_cupy_jit, "candidate_source_dirs", lambda: [tmp_path / "nowhere"])
    reason = loader.unavailable_reason()
    assert "csrc" in reason and "nowhere" in reason


def test_jit_compile_error_is_reported(monkeypatch, pretend_gpu):
    _hide_module(monkeypatch, "flowfm_kernels._C")

    class BrokenModule:
        def __init__(self, **kwargs):
            raise RuntimeError("nvrtc: error: identifier \"__half\" is undefined")

    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(RawModule=BrokenModule))
    reason = loader.unavailable_reason()
    assert "JIT build" in reason and "__half" in reason


def test_sources_are_found_in_the_repository():
    d = _cupy_jit.find_source_dir()
    assert d is not None and (d / "gn_film_silu.cu").is_file()
    src = _cupy_jit.jit_source(d)
    assert src.count("#line 1 ") == len(_cupy_jit.SOURCE_FILES)
    names = _cupy_jit.name_expressions()
    assert len(names) == len(set(names)) == 61
    for name in names:  # every name expression refers to a kernel defined in the sources
        assert name.split("<")[0].split("::")[1] in src


# ================================================================================================== dispatcher
@pytest.fixture
def cuda_only_op(monkeypatch):
    """A temporary op with only eager + cuda implementations (so 'auto' cannot pick triton)."""
    op = "_test_cuda_only_op"
    monkeypatch.setitem(dispatch._REGISTRY, op, {"eager": "flowfm_kernels.ode_steps.reference:euler_step_ref",
                                                 "cuda": "flowfm_kernels.ode_steps.cuda:euler_step_cuda"})
    monkeypatch.setitem(dispatch._CUDA_PREFERENCE, op, ("cuda", "eager"))
    monkeypatch.setattr(dispatch, "_warned", set())
    return op


def test_auto_falls_back_to_eager_with_a_warning(cuda_only_op, monkeypatch, fresh_loader):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="cuda.*unavailable.*GPU"):
        assert dispatch.resolve(cuda_only_op, None, torch.device("cuda")) == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per (op, backend)
        assert dispatch.resolve(cuda_only_op, "auto", torch.device("cuda")) == "eager"


def test_auto_fallback_names_the_missing_module(cuda_only_op, monkeypatch, pretend_gpu):
    _hide_module(monkeypatch, "flowfm_kernels._C")
    _hide_module(monkeypatch, "cupy")
    with pytest.warns(RuntimeWarning, match="flowfm_kernels._C"):
        assert dispatch.resolve(cuda_only_op, "auto", torch.device("cuda")) == "eager"


def test_explicit_cuda_raises_with_the_reason(monkeypatch, pretend_gpu):
    _hide_module(monkeypatch, "flowfm_kernels._C")
    _hide_module(monkeypatch, "cupy")
    for op in ("gn_film_silu", "flow_matching_loss", "interpolate", "euler_step", "heun_correct", "rk4_combine",
               "guidance_combine"):
        with pytest.raises(dispatch.BackendUnavailableError, match="flowfm_kernels._C.*cupy"):
            dispatch.resolve(op, "cuda", torch.device("cuda"))


def test_env_backend_cuda_raises_too(monkeypatch, fresh_loader):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("FLOWFM_BACKEND", "cuda")
    with pytest.raises(dispatch.BackendUnavailableError, match="GPU"):
        dispatch.resolve("euler_step", None, torch.device("cuda"))


def test_ops_reject_cpu_tensors():
    x = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="CUDA tensors"):
        euler_step_cuda(x, x, torch.ones(2))


# ================================================================================================== build logic
def _dirs(*paths):
    existing = {os.path.normpath(p) for p in paths}
    return lambda p: os.path.normpath(p) in existing


def test_cuda_root_order_and_standard_locations():
    isdir = _dirs("/opt/cuda-home", "/opt/cuda-home/include", "/opt/cuda-path", "/opt/cuda-path/include",
                  "/usr/local/cuda", "/usr/local/cuda/include", "/opt/cuda", "/opt/cuda/include")
    env = {"CUDA_HOME": "/opt/cuda-home", "CUDA_PATH": "/opt/cuda-path"}
    assert _build.find_cuda_root(env, isdir) == "/opt/cuda-home"
    assert _build.find_cuda_root({"CUDA_PATH": "/opt/cuda-path"}, isdir) == "/opt/cuda-path"
    assert _build.find_cuda_root({}, isdir) == "/usr/local/cuda"
    assert _build.find_cuda_root({}, _dirs("/opt/cuda", "/opt/cuda/include")) == "/opt/cuda"
    # a CUDA_HOME without include/ is skipped; nothing at all -> None
    assert _build.find_cuda_root({"CUDA_HOME": "/bogus"}, _dirs("/bogus", "/opt/cuda", "/opt/cuda/include")) \
        == "/opt/cuda"
    assert _build.find_cuda_root({}, _dirs()) is None


def test_cuda_root_never_comes_from_an_nvcc_wrapper():
    """nvcc on PATH may be a wrapper (/usr/local/bin/nvcc, no toolkit beside it): no root is derived from it (a
    real toolkit's nvcc, reached through its symlink, is: tests/test_gpu_check.py)."""
    isdir = _dirs("/usr/local/bin", "/usr/local/cuda-13.0", "/usr/local/cuda-13.0/include")
    assert _build.find_cuda_root({"PATH": "/usr/local/bin"}, isdir) is None
    nvcc = _build.find_nvcc(None, {}, isfile=lambda p: False, which=lambda name: "/usr/local/bin/nvcc")
    assert nvcc == "/usr/local/bin/nvcc"
    assert _build.find_nvcc("/usr/local/cuda", {}, isfile=lambda p: p == "/usr/local/cuda/bin/nvcc",
                            which=lambda name: "/usr/local/bin/nvcc") == "/usr/local/cuda/bin/nvcc"
    assert _build.find_nvcc(None, {"NVCC": "/x/nvcc"}, isfile=lambda p: False, which=lambda n: None) == "/x/nvcc"


def test_gpu_visibility_probes():
    no_smi = dict(which=lambda name: None)
    assert _build.gpu_visible(exists=lambda p: p == "/dev/nvidia0", **no_smi)
    assert not _build.gpu_visible(exists=lambda p: False, **no_smi)

    def smi(stdout, rc=0):
        return lambda cmd, **kw: subprocess.CompletedProcess(cmd, rc, stdout=stdout, stderr="")

    which = dict(which=lambda name: "/usr/bin/nvidia-smi")
    assert _build.gpu_visible(exists=lambda p: False, run=smi("GPU 0: NVIDIA H100 (UUID: x)"), **which)
    assert not _build.gpu_visible(exists=lambda p: False, run=smi("", rc=9), **which)

    def boom(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, 20)

    assert not _build.gpu_visible(exists=lambda p: False, run=boom, **which)


@pytest.mark.parametrize("raw, mode", [(None, "auto"), ("", "auto"), ("AUTO", "auto"), ("1", "1"), ("yes", "1"),
                                       ("on", "1"), ("0", "0"), ("false", "0"), ("off", "0")])
def test_build_mode_parsing(raw, mode):
    env = {} if raw is None else {"FLOWFM_BUILD_CUDA": raw}
    assert _build.build_mode(env) == mode


def test_build_mode_rejects_garbage():
    with pytest.raises(ValueError, match="FLOWFM_BUILD_CUDA"):
        _build.build_mode({"FLOWFM_BUILD_CUDA": "sometimes"})


def test_build_decisions():
    root, nvcc = "/usr/local/cuda", "/usr/local/cuda/bin/nvcc"
    # 0: never, whatever is present
    d = _build.decide_build("0", root, nvcc, True)
    assert not d.build and "FLOWFM_BUILD_CUDA=0" in d.reason
    # auto: all three needed
    d = _build.decide_build("auto", root, nvcc, True)
    assert d.build and not d.required
    d = _build.decide_build("auto", root, nvcc, False)
    assert not d.build and "no GPU" in d.reason
    d = _build.decide_build("auto", None, nvcc, True)
    assert not d.build and "CUDA toolkit root" in d.reason
    d = _build.decide_build("auto", root, None, True)
    assert not d.build and "nvcc" in d.reason
    # 1: builds without a GPU (nvcc needs none), fails loudly without the toolkit
    d = _build.decide_build("1", root, nvcc, False)
    assert d.build and d.required
    with pytest.raises(RuntimeError, match="FLOWFM_BUILD_CUDA=1.*nvcc"):
        _build.decide_build("1", root, None, True)
    with pytest.raises(RuntimeError, match="CUDA toolkit root"):
        _build.decide_build("1", None, nvcc, True)


def test_decide_from_environment_skips_gpu_probe_when_off(monkeypatch):
    monkeypatch.setattr(_build, "gpu_visible", lambda *a, **k: pytest.fail("probed the GPU with FLOWFM_BUILD_CUDA=0"))
    decision, root, nvcc = _build.decide_from_environment({"FLOWFM_BUILD_CUDA": "0"})
    assert not decision.build and root is None and nvcc is None


def test_arch_flags():
    assert _build.parse_archs(None) == ["90"]
    assert _build.parse_archs("sm_90") == ["90"]
    assert _build.parse_archs("90a") == ["90a"]
    assert _build.parse_archs("80, sm_90;90") == ["80", "90"]
    with pytest.raises(ValueError, match="FLOWFM_CUDA_ARCH"):
        _build.parse_archs("hopper")
    flags = _build.gencode_flags(["80", "90"])
    assert flags == ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
                     "-gencode=arch=compute_90,code=compute_90"]
    cmd = _build.nvcc_compile_command("nvcc", "a.cu", "a.o", ["inc"], ["90"])
    assert "-O3" in cmd and "-fPIC" in cmd and ["-I", "inc"] == cmd[cmd.index("-I"):cmd.index("-I") + 2]


def test_setup_py_without_cuda_is_pure_python(tmp_path):
    """FLOWFM_BUILD_CUDA=0: setup.py runs (no nvcc needed) and says so."""
    env = dict(os.environ, FLOWFM_BUILD_CUDA="0")
    proc = subprocess.run([sys.executable, "setup.py", "--name"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "flowfm" in proc.stdout and "FLOWFM_BUILD_CUDA=0" in proc.stderr


# ================================================================================================== plans / API
def test_gn_plan_properties():
    small = _cupy_jit.gn_fwd_plan(8, 64, 300, 8, 132)
    assert small["fused"] and small["cache"] and small["workspace_bytes"] == 0
    assert small["smem_bytes"] <= _cupy_jit.SMEM_BUDGET_BYTES
    big = _cupy_jit.gn_fwd_plan(1, 64, 100_000, 1, 132)
    assert not big["fused"] and big["workspace_bytes"] == big["chunks"] * 12 and big["chunks"] > 1
    for B, C, L, G, sms in [(1, 4, 5000, 1, 2), (3, 6, 17, 3, 132), (2, 64, 299, 32, 4), (1, 3, 7001, 1, 2),
                            (256, 256, 75, 32, 132), (1, 8192, 2, 1, 8)]:
        p = _cupy_jit.gn_fwd_plan(B, C, L, G, sms)
        N = C // G * L
        assert p["chunk_elems"] % 4 == 0
        assert p["chunks"] * p["chunk_elems"] >= N > (p["chunks"] - 1) * p["chunk_elems"]
        if p["fused"]:
            assert p["smem_bytes"] <= _cupy_jit.SMEM_BUDGET_BYTES
    assert _cupy_jit.fm_loss_chunks(1) == 1 and _cupy_jit.fm_loss_chunks(4097) == 2


def _record_launches(call, sms: int = 132) -> list:
    """Runs ``call(module)`` on a JIT kernels module whose launches are only recorded (and checked against CUDA's
    grid limits by tests/cuda_emulation.py); returns the launches."""
    fake = EmuCupy(None, sms)
    call(EmuKernels(_cupy_jit.find_source_dir(), cupy_module=fake))
    return fake.launches


@pytest.mark.parametrize("sms", [1, 132])
def test_launch_geometry_stays_within_cuda_limits_for_huge_batches(sms):
    """Every launcher at batches far beyond 65,535 (grid y / z limit): the geometry check in EmuKernel fails the
    test if any launch puts more than 65,535 blocks on y or z. Pointers are fake (nothing runs)."""
    P = 1 << 20  # a fake, suitably aligned device address

    def gn(B, C, L, G):
        def call(m):
            ws = m.gn_fwd_workspace_bytes(B, C, L, G)
            m.gn_film_silu_fwd(P, P, P, P, P, P, P, P, P if ws else 0, ws, B, C, L, G, 1e-5, 0, 0)
            m.gn_film_silu_bwd(P, P, P, P, P, P, P, P, P, P, P, P, P, P, m.gn_bwd_workspace_bytes(B, C), B, C, L, G,
                               0, 0)
        return call

    def steps(B, N):
        def call(m):
            m.fm_loss_fwd(P, P, P, P, P, P, m.fm_loss_workspace_bytes(B, N), B, N, 0.0, 0, 0, 0, 0)
            m.interpolate(P, P, P, P, B, N, 0.0, 0, 0)
            m.euler_step(P, P, P, P, P, B, N, 2.0, 0, 0, 0)
            m.heun_correct(P, P, P, P, P, P, P, B, N, 2.0, 0, 0, 0)
            m.rk4_combine(P, P, P, P, P, P, P, B, N, 0, 0, 0)
            m.guidance_combine(P, P, P, B * N, 2.0, 0, 0)
        return call

    cases = [gn(100_000, 8, 4, 2), gn(70_001, 3, 5, 1), gn(1, 4, 1 << 22, 1), steps(200_000, 3 * 300),
             steps(70_000, 7), steps(3, 1 << 24)]
    for call in cases:
        launches = _record_launches(call, sms)
        assert launches
        for la in launches:  # the y-capped kernels grid-stride over the remaining samples
            assert la.grid[2] == 1
    # dgamma / dbeta: the batch is spread over blocks (32 rows each), not looped over by one block
    launches = _record_launches(gn(1024, 256, 75, 32), sms)
    partial = [la for la in launches if la.name == "flowfm::gn_bwd_params_partial_kernel"]
    assert len(partial) == 1 and partial[0].grid[0] == (1024 // 32) * (256 // 32)


@pytest.mark.skipif(not _ext_importable(), reason="flowfm_kernels._C is not built here")
def test_ext_and_jit_expose_the_same_api_and_plans():
    import flowfm_kernels._C as ext

    ext_fns = {n for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))}
    jit_fns = {n for n in dir(_cupy_jit.JitKernels) if not n.startswith("_")
               and callable(getattr(_cupy_jit.JitKernels, n))} - {"compile"}
    assert ext_fns == jit_fns
    for shape in [(1, 64, 100000, 1), (4, 64, 300, 8), (256, 256, 75, 32), (3, 6, 17, 3), (2, 8192, 2, 1),
                  (1, 4, 5000, 1), (1, 3, 4999, 1)]:
        for sms in (1, 2, 66, 132):
            assert ext.gn_fwd_plan(*shape, sms) == _cupy_jit.gn_fwd_plan(*shape, sms), (shape, sms)
    for B, N in [(1, 1), (3, 900), (2, 4097), (7, 100_000)]:
        assert ext.fm_loss_workspace_bytes(B, N) == _cupy_jit.fm_loss_workspace_bytes(B, N)
    for B, C in [(1, 1), (31, 7), (32, 64), (33, 64), (1024, 256), (70_000, 3)]:
        assert ext.gn_bwd_workspace_bytes(B, C) == _cupy_jit.gn_bwd_workspace_bytes(B, C), (B, C)
    with pytest.raises(ValueError, match="null pointer"):
        ext.euler_step(0, 0, 0, 0, 0, 1, 1, 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="dtype code"):
        ext.guidance_combine(16, 16, 16, 4, 1.0, 7, 0)


def _libnvrtc():
    try:
        from flowfm_kernels.cuda._nvrtc_check import find_libnvrtc

        return find_libnvrtc()
    except Exception:  # noqa: BLE001
        return None


@pytest.mark.slow
@pytest.mark.skipif(_libnvrtc() is None or _build.find_cuda_root() is None,
                    reason="libnvrtc or the CUDA headers not found")
def test_jit_sources_compile_with_nvrtc():
    from flowfm_kernels.cuda._nvrtc_check import compile_sources

    lowered = compile_sources("sm_90")
    assert set(lowered) == set(_cupy_jit.name_expressions())


# ================================================================================================== CPU emulation
# ================================================================================================== backends
@dataclass
class Backend:
    name: str
    device: str
    module: Any
    set_sms: Callable[[int], None]


@pytest.fixture(params=["emu", pytest.param("gpu-ext", marks=pytest.mark.gpu),
                        pytest.param("gpu-jit", marks=pytest.mark.gpu)])
def backend(request, monkeypatch):
    if request.param == "emu":
        module, fake = emulated_module(request.getfixturevalue("emu_lib"))

        def set_sms(n):
            fake.sms = n
            module._sms.clear()

        monkeypatch.setattr(loader, "get_module", lambda: module)
        monkeypatch.setattr(launch, "_ALLOW_CPU_TENSORS", True)
        yield Backend("emu", "cpu", module, set_sms)
        return
    impl = request.param.split("-")[1]
    monkeypatch.setenv(loader.IMPL_ENV, impl)
    loader.clear_cache()
    reason = loader.unavailable_reason()
    if reason:
        loader.clear_cache()
        pytest.skip(f"FLOWFM_CUDA_IMPL={impl}: {reason}")
    module = loader.get_module()
    assert getattr(module, "IMPLEMENTATION", "ext") == impl
    yield Backend(request.param, "cuda", module, lambda n: None)
    loader.clear_cache()


@pytest.fixture
def poison_allocations(monkeypatch):
    """torch.empty / empty_like return NaN-filled float tensors (0xFF bytes otherwise) while the test runs, so an
    output or workspace element that a kernel forgets to write shows up as NaN."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def poison(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t.fill_(-1 if t.dtype.is_signed else 255)

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(real_empty_like(*a, **k)))


def _randn(shape, dtype, device, gen, scale=1.0, offset=0.0):
    return (torch.randn(shape, generator=gen) * scale + offset).to(device=device, dtype=dtype)


def _tol(dtype):
    return REL_RMS_TOL[dtype]


# ================================================================================================== GN + FiLM + SiLU
GN_SHAPES = [  # (B, C, L, G, sms): fused+cached, odd L, channel-crossing vectors, fused uncached, split paths
    (1, 4, 1, 2, 132), (3, 6, 17, 3, 132), (2, 8, 17, 2, 132), (1, 4, 299, 4, 132), (3, 12, 301, 3, 132),
    (2, 16, 300, 4, 132), (2, 4, 3001, 2, 1), (1, 3, 4999, 1, 132), (1, 4, 5000, 1, 2), (1, 3, 7001, 1, 2),
]


def _gn_inputs(B, C, L, dtype, device, gen, with_params=(True, True, True, True), param_dtype=torch.float32):
    h = _randn((B, C, L), dtype, device, gen, scale=2.0, offset=0.5)
    gamma = _randn((C,), param_dtype, device, gen, 0.5, 1.0) if with_params[0] else None
    beta = _randn((C,), param_dtype, device, gen, 0.5) if with_params[1] else None
    scale = _randn((B, C), param_dtype, device, gen, 0.3) if with_params[2] else None
    shift = _randn((B, C), param_dtype, device, gen, 0.3) if with_params[3] else None
    return h, gamma, beta, scale, shift


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L, G, sms", GN_SHAPES)
def test_gn_film_silu_forward(backend, poison_allocations, dtype, B, C, L, G, sms):
    backend.set_sms(sms)
    gen = torch.Generator().manual_seed(B * 1000 + C * 10 + L)
    h, gamma, beta, scale, shift = _gn_inputs(B, C, L, dtype, backend.device, gen)
    with torch.no_grad():
        y = gn_film_silu_cuda(h, gamma, beta, scale, shift, G)
        ref = gn_film_silu_ref(h, gamma, beta, scale, shift, G)
    assert y.dtype == dtype and y.shape == h.shape
    assert_rel_rms(y, ref, _tol(dtype), f"gn_film_silu {backend.name} {dtype} {(B, C, L, G)}")


@pytest.mark.parametrize("with_params", [(False, False, False, False), (True, True, False, False),
                                         (False, False, True, True), (True, False, True, False)])
def test_gn_film_silu_optional_parameters(backend, with_params):
    gen = torch.Generator().manual_seed(7)
    h, gamma, beta, scale, shift = _gn_inputs(3, 8, 33, torch.float32, backend.device, gen, with_params)
    with torch.no_grad():
        y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 4, eps=1e-3)
        ref = gn_film_silu_ref(h, gamma, beta, scale, shift, 4, eps=1e-3)
    assert_rel_rms(y, ref, _tol(torch.float32), f"gn_film_silu params={with_params}")


def test_gn_film_silu_noncontiguous_and_large_mean(backend):
    """A large common offset (|mean| >> std) must not cost accuracy: the kernels normalise (h - mean) first."""
    gen = torch.Generator().manual_seed(3)
    h, gamma, beta, scale, shift = _gn_inputs(2, 8, 41, torch.float32, backend.device, gen)
    h = non_contiguous(h + 100.0)
    with torch.no_grad():
        y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 2)
        ref = gn_film_silu_ref(h, gamma, beta, scale, shift, 2)
    assert_rel_rms(y, ref, 1e-4, "gn_film_silu offset 100")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L, G, sms", [(3, 6, 17, 3, 132), (2, 8, 20, 2, 132), (1, 4, 301, 2, 132),
                                             (3, 16, 1, 2, 132), (1, 4, 5000, 1, 2), (1, 3, 7001, 1, 2)])
def test_gn_film_silu_backward(backend, poison_allocations, dtype, B, C, L, G, sms):
    backend.set_sms(sms)
    gen = torch.Generator().manual_seed(11 + L)
    inputs = _gn_inputs(B, C, L, dtype, backend.device, gen)
    dy = _randn((B, C, L), dtype, backend.device, gen)
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    ref_leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = gn_film_silu_cuda(*leaves, G)
    y.backward(dy)
    ref = gn_film_silu_ref(*ref_leaves, G)
    ref.backward(dy)
    assert_rel_rms(y.detach(), ref.detach(), _tol(dtype), "gn forward (autograd path)")
    tol = max(_tol(dtype), 1e-4)  # fp32 gradients sum B*L products in another order than autograd
    for name, got, want in zip(("dh", "dgamma", "dbeta", "dscale", "dshift"), leaves, ref_leaves):
        assert got.grad is not None and got.grad.dtype == got.dtype, name
        assert_rel_rms(got.grad, want.grad, tol, f"gn {name} {backend.name} {dtype} {(B, C, L, G)}")


def test_gn_film_silu_backward_partial_requirements(backend):
    """Only some inputs need gradients: the others stay None (their kernels are skipped)."""
    gen = torch.Generator().manual_seed(5)
    h, gamma, beta, scale, shift = _gn_inputs(2, 8, 19, torch.float32, backend.device, gen)
    scale = scale.clone().requires_grad_(True)
    y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 4)
    y.sum().backward()
    scale_ref = scale.detach().clone().requires_grad_(True)
    gn_film_silu_ref(h, gamma, beta, scale_ref, shift, 4).sum().backward()
    assert h.grad is None and gamma.grad is None
    assert_rel_rms(scale.grad, scale_ref.grad, 1e-4, "dscale only")


@pytest.mark.parametrize("B, C, with_scale", [(1, 5, True), (32, 32, True), (33, 36, False), (300, 40, True)])
def test_gn_bwd_params_kernels_against_float64(backend, poison_allocations, B, C, with_scale):
    """The two dgamma / dbeta kernels alone (launched as gn_film_silu_bwd launches them): batch chunks of 32 rows
    and 32-channel tiles, partial last chunk and tile, against float64 sums; deterministic."""
    if backend.device != "cpu":
        pytest.skip("drives the JIT kernels directly (emulation only)")
    gen = torch.Generator().manual_seed(B + C)
    s1, s2 = (_randn((B, C), torch.float32, "cpu", gen) for _ in range(2))
    scale = _randn((B, C), torch.float32, "cpu", gen, 0.3) if with_scale else None
    chunks = _cupy_jit.gn_param_chunks(B)
    assert chunks == -(-B // 32)
    mod, p, i32, i64 = backend.module, backend.module._p, backend.module._i32, backend.module._i64

    def run():
        part = torch.empty((chunks, C, 2), dtype=torch.float32)
        dgamma, dbeta = torch.empty(C), torch.empty(C)
        with mod._device() as dev:
            stream = mod._stream(dev, 0)
            mod._launch(dev, stream, "flowfm::gn_bwd_params_partial_kernel",
                        (chunks * _cupy_jit.gn_param_tiles(C),),
                        (p(s1.data_ptr()), p(s2.data_ptr()), p(0 if scale is None else scale.data_ptr()),
                         p(part.data_ptr()), i64(B), i32(C), i32(_cupy_jit.GN_PARAM_ROWS)))
            mod._launch(dev, stream, "flowfm::gn_bwd_params_finalize_kernel", (-(-C // _cupy_jit.THREADS),),
                        (p(part.data_ptr()), p(dgamma.data_ptr()), p(dbeta.data_ptr()), i32(C), i64(chunks)))
        return dgamma, dbeta

    dgamma, dbeta = run()
    w = (1.0 + scale.double()) if scale is not None else torch.ones(B, C, dtype=torch.float64)
    assert_rel_rms(dgamma, (w * s2.double()).sum(0), 1e-6, f"dgamma {(B, C)}")
    assert_rel_rms(dbeta, (w * s1.double()).sum(0), 1e-6, f"dbeta {(B, C)}")
    again = run()
    assert torch.equal(dgamma, again[0]) and torch.equal(dbeta, again[1])


def test_gn_film_silu_param_grads_over_several_batch_chunks(backend, poison_allocations):
    """dgamma / dbeta through the full backward with B = 67 (three 32-row chunks, the last partial) and C = 36
    (two channel tiles); h needs no gradient, so only the row and parameter kernels run."""
    gen = torch.Generator().manual_seed(21)
    h, gamma, beta, scale, shift = _gn_inputs(67, 36, 4, torch.float32, backend.device, gen)
    dy = _randn((67, 36, 4), torch.float32, backend.device, gen)
    leaves = [t.detach().clone().requires_grad_(True) for t in (gamma, beta)]
    refs = [t.detach().clone().requires_grad_(True) for t in (gamma, beta)]
    gn_film_silu_cuda(h, *leaves, scale, shift, 4).backward(dy)
    gn_film_silu_ref(h, *refs, scale, shift, 4).backward(dy)
    for name, got, want in zip(("dgamma", "dbeta"), leaves, refs):
        assert_rel_rms(got.grad, want.grad, 1e-5, f"{name} B=67")


def test_gn_film_silu_is_deterministic(backend):
    gen = torch.Generator().manual_seed(9)
    backend.set_sms(2)
    inputs = _gn_inputs(1, 4, 5000, torch.float32, backend.device, gen)  # split path: cross-block reductions
    dy = _randn((1, 4, 5000), torch.float32, backend.device, gen)
    results = []
    for _ in range(2):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        y = gn_film_silu_cuda(*leaves, 1)
        y.backward(dy)
        results.append([y.detach()] + [t.grad for t in leaves])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_gn_film_silu_float64_runs_the_reference(backend):
    gen = torch.Generator().manual_seed(1)
    h, gamma, beta, scale, shift = _gn_inputs(2, 4, 9, torch.float64, backend.device, gen, param_dtype=torch.float64)
    y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 2)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, gn_film_silu_ref(h, gamma, beta, scale, shift, 2))


# ================================================================================================== conv block
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B, Cin, Cout, L, G, with_bias", [(2, 3, 8, 17, 4, True), (1, 5, 6, 33, 3, False)])
def test_conv_block_cuda_matches_reference(backend, poison_allocations, dtype, B, Cin, Cout, L, G, with_bias):
    """conv_block_cuda = torch's conv1d + the CUDA GN epilogue: forward and every gradient against conv_block_ref,
    from a non-contiguous x."""
    from flowfm_kernels.conv_block.reference import conv_block_ref

    gen = torch.Generator().manual_seed(Cin * 100 + L)
    x = non_contiguous(_randn((B, Cin, L), dtype, backend.device, gen))
    weight = _randn((Cout, Cin, 3), dtype, backend.device, gen, 0.4)
    bias = _randn((Cout,), dtype, backend.device, gen, 0.2) if with_bias else None
    _, gamma, beta, scale, shift = _gn_inputs(B, Cout, 1, torch.float32, backend.device, gen)
    dy = _randn((B, Cout, L), dtype, backend.device, gen)
    inputs = [x, weight, bias, gamma, beta, scale, shift]
    outs, grads = [], []
    for fn in (conv_block_cuda, conv_block_ref):
        leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in inputs]
        y = fn(*leaves, G)
        y.backward(dy)
        outs.append(y.detach())
        grads.append([None if t is None else t.grad for t in leaves])
    tol = max(_tol(dtype), 1e-4)
    assert outs[0].dtype == dtype
    assert_rel_rms(outs[0], outs[1], _tol(dtype), f"conv_block {dtype}")
    for name, got, want in zip(("dx", "dweight", "dbias", "dgamma", "dbeta", "dscale", "dshift"), *grads):
        if want is None:
            assert got is None, name
            continue
        assert got.dtype == want.dtype, name
        assert_rel_rms(got, want, tol, f"conv_block {name} {dtype}")


def test_conv_block_cuda_rejects_bad_shapes_and_devices():
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="weight \\(Cout, Cin, 3\\)"):
        conv_block_cuda(x, torch.randn(4, 3, 5), None, None, None, None, None, 2)
    with pytest.raises(ValueError, match="CUDA tensors"):
        conv_block_cuda(x, torch.randn(4, 3, 3), None, None, None, None, None, 2)


# ================================================================================================== FM loss
LOSS_SHAPES = [(1, 3, 1), (3, 3, 17), (3, 3, 300), (2, 5, 301), (1, 3, 299), (2, 7, 1200)]


@pytest.mark.parametrize("v_dtype, x_dtype", [(d, d) for d in DTYPES] + [(torch.bfloat16, torch.float32),
                                                                         (torch.float32, torch.float16)])
@pytest.mark.parametrize("B, C, L", LOSS_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_flow_matching_loss(backend, poison_allocations, v_dtype, x_dtype, B, C, L, reduction):
    gen = torch.Generator().manual_seed(B + C + L)
    v = _randn((B, C, L), v_dtype, backend.device, gen)
    x0 = _randn((B, C, L), x_dtype, backend.device, gen)
    x1 = _randn((B, C, L), x_dtype, backend.device, gen)
    for sigma_min in (0.0, 0.05):
        with torch.no_grad():
            loss = flow_matching_loss_cuda(v, x0, x1, sigma_min, reduction)
        ref = flow_matching_loss_ref(v, x0, x1, sigma_min, reduction)
        assert loss.dtype == torch.float32 and loss.shape == ref.shape
        assert_rel_rms(loss, ref, 1e-5, f"fm loss {reduction} {v_dtype}/{x_dtype} s={sigma_min}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_flow_matching_loss_gradients(backend, poison_allocations, dtype, reduction):
    gen = torch.Generator().manual_seed(4)
    B, C, L = 3, 3, 301
    tensors = [_randn((B, C, L), dtype, backend.device, gen) for _ in range(3)]
    weights = _randn((B,), torch.float32, backend.device, gen)
    grads = []
    for fn in (flow_matching_loss_cuda, flow_matching_loss_ref):
        leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
        loss = fn(*leaves, 0.1, reduction)
        (3.0 * loss if reduction == "mean" else (loss * weights).sum()).backward()
        grads.append([t.grad for t in leaves])
    for name, got, want in zip(("dv", "dx0", "dx1"), *grads):
        assert got.dtype == dtype
        assert_rel_rms(got, want, _tol(dtype), f"fm loss {name} {reduction} {dtype}")


def test_flow_matching_loss_noncontiguous_and_grad_only_for_v(backend):
    gen = torch.Generator().manual_seed(8)
    v, x0, x1 = (non_contiguous(_randn((2, 3, 50), torch.float32, backend.device, gen)) for _ in range(3))
    v_leaf = v.detach().clone().requires_grad_(True)
    loss = flow_matching_loss_cuda(v_leaf, x0, x1)
    loss.backward()
    v_ref = v.detach().clone().requires_grad_(True)
    flow_matching_loss_ref(v_ref, x0, x1).backward()
    assert_rel_rms(loss.detach(), flow_matching_loss_ref(v, x0, x1), 1e-5, "loss non-contiguous")
    assert_rel_rms(v_leaf.grad, v_ref.grad, 1e-5, "dv non-contiguous")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L", LOSS_SHAPES)
def test_interpolate(backend, poison_allocations, dtype, B, C, L):
    gen = torch.Generator().manual_seed(2 * B + L)
    x0 = _randn((B, C, L), dtype, backend.device, gen)
    x1 = _randn((B, C, L), dtype, backend.device, gen)
    t = torch.rand(B, generator=gen).to(backend.device)
    for sigma_min in (0.0, 0.01):
        xt = interpolate_cuda(x0, x1, t, sigma_min)
        assert xt.dtype == dtype
        assert_rel_rms(xt, interpolate_ref(x0, x1, t, sigma_min), _tol(dtype), f"interpolate {dtype} {(B, C, L)}")


def test_interpolate_noncontiguous(backend):
    gen = torch.Generator().manual_seed(6)
    x0, x1 = (non_contiguous(_randn((3, 3, 37), torch.float32, backend.device, gen)) for _ in range(2))
    t = torch.rand(3, generator=gen).to(backend.device)
    assert_rel_rms(interpolate_cuda(x0, x1, t), interpolate_ref(x0, x1, t), 1e-6, "interpolate non-contiguous")


# ================================================================================================== ODE steps
STEP_SHAPES = [(1, 3, 1), (3, 3, 17), (3, 3, 299), (1, 4, 301), (2, 3, 300)]
STEP_DTYPES = [(d, d) for d in DTYPES] + [(torch.float32, torch.bfloat16), (torch.float32, torch.float16),
                                          (torch.bfloat16, torch.float32)]


def _step_tol(x_dtype, v_dtype):
    return max(_tol(x_dtype), _tol(v_dtype))


@pytest.mark.parametrize("x_dtype, v_dtype", STEP_DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_euler_step(backend, x_dtype, v_dtype, B, C, L, guided, out_mode):
    gen = torch.Generator().manual_seed(B * 7 + L)
    x = _randn((B, C, L), x_dtype, backend.device, gen)
    v = _randn((B, C, L), v_dtype, backend.device, gen)
    v_null = _randn((B, C, L), v_dtype, backend.device, gen) if guided else None
    dt = (torch.rand(B, generator=gen) * 0.2 + 0.01).to(backend.device)
    w = 2.5 if guided else 1.0
    ref = euler_step_ref(x, v, dt, None, v_null, w)
    x_in = x.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(x), "inplace": x_in}[out_mode]
    got = euler_step_cuda(x_in, v, dt, out, v_null, w)
    if out is not None:
        assert got is out
    assert_rel_rms(got, ref, _step_tol(x_dtype, v_dtype), f"euler {x_dtype}/{v_dtype} {(B, C, L)} {out_mode}")


@pytest.mark.parametrize("x_dtype, v_dtype", STEP_DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("guidance_mode", ["none", "both", "first"])
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_heun_correct(backend, x_dtype, v_dtype, B, C, L, guidance_mode, out_mode):
    gen = torch.Generator().manual_seed(B * 11 + L)
    x = _randn((B, C, L), x_dtype, backend.device, gen)
    v1, v2 = (_randn((B, C, L), v_dtype, backend.device, gen) for _ in range(2))
    n1 = _randn((B, C, L), v_dtype, backend.device, gen) if guidance_mode != "none" else None
    n2 = _randn((B, C, L), v_dtype, backend.device, gen) if guidance_mode == "both" else None
    dt = (torch.rand(B, generator=gen) * 0.2 + 0.01).to(backend.device)
    ref = heun_correct_ref(x, v1, v2, dt, None, n1, n2, 1.8)
    x_in = x.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(x), "inplace": x_in}[out_mode]
    got = heun_correct_cuda(x_in, v1, v2, dt, out, n1, n2, 1.8)
    assert_rel_rms(got, ref, _step_tol(x_dtype, v_dtype), f"heun {x_dtype}/{v_dtype} {(B, C, L)} {guidance_mode}")


@pytest.mark.parametrize("x_dtype, v_dtype", STEP_DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_rk4_combine(backend, x_dtype, v_dtype, B, C, L, out_mode):
    gen = torch.Generator().manual_seed(B * 13 + L)
    x = _randn((B, C, L), x_dtype, backend.device, gen)
    ks = [_randn((B, C, L), v_dtype, backend.device, gen) for _ in range(4)]
    dt = (torch.rand(B, generator=gen) * 0.2 + 0.01).to(backend.device)
    ref = rk4_combine_ref(x, *ks, dt)
    x_in = x.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(x), "inplace": x_in}[out_mode]
    got = rk4_combine_cuda(x_in, *ks, dt, out)
    assert_rel_rms(got, ref, _step_tol(x_dtype, v_dtype), f"rk4 {x_dtype}/{v_dtype} {(B, C, L)} {out_mode}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace_v", "inplace_null"])
def test_guidance_combine(backend, dtype, B, C, L, out_mode):
    gen = torch.Generator().manual_seed(B * 17 + L)
    v, v_null = (_randn((B, C, L), dtype, backend.device, gen) for _ in range(2))
    ref = guidance_combine_ref(v, v_null, 3.0)
    v_in, n_in = v.clone(), v_null.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(v), "inplace_v": v_in, "inplace_null": n_in}[out_mode]
    got = guidance_combine_cuda(v_in, n_in, 3.0, out)
    assert_rel_rms(got, ref, _tol(dtype), f"guidance {dtype} {(B, C, L)} {out_mode}")


def test_steps_with_noncontiguous_tensors(backend):
    gen = torch.Generator().manual_seed(12)
    B, C, L = 3, 3, 23
    x, v, vn = (non_contiguous(_randn((B, C, L), torch.float32, backend.device, gen)) for _ in range(3))
    dt = torch.rand(B, generator=gen).to(backend.device)
    ref = euler_step_ref(x, v, dt, None, vn, 1.5)
    got = euler_step_cuda(x, v, dt, None, vn, 1.5)
    assert_rel_rms(got, ref, 1e-6, "euler non-contiguous inputs")
    out = non_contiguous(torch.full((B, C, L), float("nan"), device=backend.device))
    got = euler_step_cuda(x, v, dt, out, vn, 1.5)
    assert got is out
    assert_rel_rms(out, ref, 1e-6, "euler non-contiguous out")
    x_view = non_contiguous(x.contiguous())  # a fresh non-contiguous state updated in place
    ref2 = euler_step_ref(x_view, v, dt)
    got2 = euler_step_cuda(x_view, v, dt, x_view)
    assert got2 is x_view
    assert_rel_rms(x_view, ref2, 1e-6, "euler in place on a non-contiguous x")


def test_steps_scalar_dt_broadcasts_and_fallbacks(backend):
    gen = torch.Generator().manual_seed(13)
    x, v = (_randn((2, 3, 8), torch.float32, backend.device, gen) for _ in range(2))
    dt1 = torch.tensor([0.25], device=backend.device)
    assert_rel_rms(euler_step_cuda(x, v, dt1), x + 0.25 * v, 1e-6, "dt broadcast")
    # float64 and tensor-valued guidance run the reference
    x64, v64 = x.double(), v.double()
    dt = torch.full((2,), 0.5, device=backend.device)
    torch.testing.assert_close(euler_step_cuda(x64, v64, dt), euler_step_ref(x64, v64, dt))
    w = torch.tensor(2.0, device=backend.device)
    torch.testing.assert_close(guidance_combine_cuda(x, v, w), guidance_combine_ref(x, v, w))
    # gradients through a step: the reference handles them
    xl = x.clone().requires_grad_(True)
    euler_step_cuda(xl, v, dt).sum().backward()
    torch.testing.assert_close(xl.grad, torch.ones_like(x))


def test_jit_argument_errors(backend):
    mod = backend.module
    with pytest.raises(ValueError, match="null pointer"):
        mod.euler_step(0, 0, 0, 0, 0, 1, 1, 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="dtype code"):
        mod.guidance_combine(16, 16, 16, 4, 1.0, 7, 0)
    with pytest.raises(ValueError, match="divisible"):
        mod.gn_fwd_workspace_bytes(2, 6, 5, 4)
    with pytest.raises(ValueError, match="workspace"):
        mod.fm_loss_fwd(16, 16, 16, 0, 16, 16, 0, 2, 8, 0.0, 0, 0, 0, 0)
