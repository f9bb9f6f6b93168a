"""The CUDA C++ backend's loader (flowfm_kernels._C, else the CuPy/NVRTC JIT) and the dispatcher's fallbacks
when it cannot run, on a mocked CUDA device (CPU only).
"""
from __future__ import annotations

import sys
import warnings
from types import SimpleNamespace

import pytest
import torch

from flowfm_kernels import dispatch
from flowfm_kernels.cuda import _cupy_jit, loader
from flowfm_kernels.ode_steps.cuda import euler_step_cuda
from tests.cuda_emulation import backend, emu_lib  # noqa: F401 (pytest fixtures)


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
