"""setup.py's build decisions (flowfm_kernels/cuda/_build.py) as pure functions with monkeypatched environments, and
a pure-Python install without CUDA.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowfm_kernels.cuda import _build

REPO = Path(__file__).resolve().parents[1]


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
