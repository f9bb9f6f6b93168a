"""Test harness: the CUDA C++ kernels of csrc/ on the CPU, through the real CuPy-JIT launcher.

``build_emulation`` compiles csrc/testing/cpu_emulation.cpp (every kernel of the JIT build, each CUDA thread an OS
thread, real barriers and warp shuffles) into a shared library; :class:`EmuCupy` is just enough of the cupy API for
:class:`flowfm_kernels.cuda._cupy_jit.JitKernels` to launch those kernels, so the launch code (grids, arguments,
workspaces) is the production code. Every launch is checked against CUDA's limits (grid y / z <= 65,535, x < 2^31,
<= 1,024 threads, dynamic shared memory) and recorded in ``EmuCupy.launches``; with ``lib=None`` nothing runs
(launch geometry only). Used by tests/test_cuda_*.py and tests/test_model_backends.py.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import pytest
import torch

from flowfm_kernels.cuda import _build, _cupy_jit, launch, loader

REPO = Path(__file__).resolve().parents[1]
MAX_GRID_X = 2 ** 31 - 1
MAX_GRID_YZ = 65535
MAX_SMEM = 48 * 1024


class Launch(NamedTuple):
    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int


def check_geometry(name: str, grid, block, shared_mem: int) -> Launch:
    """The launch as (name, 3-D grid, 3-D block, smem); AssertionError if CUDA would refuse it."""
    grid = (tuple(int(g) for g in grid) + (1, 1))[:3]
    block = (tuple(int(b) for b in block) + (1, 1))[:3]
    assert all(g >= 1 for g in grid), f"{name}: empty grid {grid}"
    assert grid[0] <= MAX_GRID_X and grid[1] <= MAX_GRID_YZ and grid[2] <= MAX_GRID_YZ, \
        f"{name}: grid {grid} exceeds CUDA's limits (x < 2^31, y and z <= 65,535)"
    assert block[0] * block[1] * block[2] <= 1024 and block[0] % 32 == 0, f"{name}: block {block}"
    assert 0 <= shared_mem <= MAX_SMEM, f"{name}: {shared_mem} bytes of dynamic shared memory"
    return Launch(name, grid, block, int(shared_mem))


class EmuKernel:
    def __init__(self, owner: "EmuCupy", name: str):
        self.owner, self.name = owner, name

    def __call__(self, grid, block, args, shared_mem=0):
        kinds, raw = [], []
        for a in args:
            if isinstance(a, np.uint64):
                kinds.append("p")
                raw.append(int(a))
            elif isinstance(a, np.int32):
                kinds.append("i")
                raw.append(int(a) & 0xFFFFFFFFFFFFFFFF)
            elif isinstance(a, np.int64):
                kinds.append("q")
                raw.append(int(a) & 0xFFFFFFFFFFFFFFFF)
            elif isinstance(a, np.float32):
                kinds.append("f")
                raw.append(int(np.array(a).view(np.uint32)))
            else:
                raise TypeError(f"{self.name}: argument {a!r} ({type(a).__name__}) is not a fixed-width numpy scalar")
        launch = check_geometry(self.name, grid, block, shared_mem)
        self.owner.launches.append(launch)
        lib = self.owner.lib
        if lib is None:
            return
        err = ctypes.create_string_buffer(1024)
        rc = lib.flowfm_emu_launch(self.name.encode(), (ctypes.c_uint * 3)(*launch.grid),
                                   (ctypes.c_uint * 3)(*launch.block), ctypes.c_ulonglong(shared_mem),
                                   (ctypes.c_ulonglong * max(len(raw), 1))(*raw), "".join(kinds).encode(), len(raw),
                                   err, len(err))
        if rc:
            raise RuntimeError(err.value.decode())


class EmuCupy:
    """Just enough of the cupy API for JitKernels; kernels run on the CPU emulation ``lib`` (None: recorded only)."""

    def __init__(self, lib, sms: int = 132):
        self.lib, self.sms = lib, sms
        self.launches: list[Launch] = []
        emu = self

        class Device:
            def __init__(self, index):
                self.id = index
                self.attributes = {"MultiProcessorCount": emu.sms}

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        class Stream:
            def __init__(self, ptr=0):
                self.ptr = ptr

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        Stream.null = Stream(0)
        self.cuda = SimpleNamespace(Device=Device, ExternalStream=Stream, Stream=Stream)

    def RawModule(self, code, options, name_expressions):  # noqa: N802 - cupy's name
        names = set(name_expressions)
        emu = self

        class Module:
            def get_function(self, name):
                assert name in names, name
                return EmuKernel(emu, name)

        return Module()


class EmuKernels(_cupy_jit.JitKernels):
    def _current_device_index(self) -> int:
        return 0


def emulated_module(lib, sms: int = 132) -> tuple[EmuKernels, EmuCupy]:
    """The kernels module (as ``loader.get_module()`` returns it) over the emulation ``lib``, and its fake cupy."""
    fake = EmuCupy(lib, sms)
    return EmuKernels(_cupy_jit.find_source_dir(), cupy_module=fake), fake


def build_emulation(tmp_root: Path) -> Optional[Path]:
    """Compile the emulation library under ``tmp_root`` (cached by a digest of the sources); None without g++ or
    the CUDA headers."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")
    root = _build.find_cuda_root()
    if not cxx or not root:
        return None
    csrc = REPO / "csrc"
    names = _cupy_jit.name_expressions()
    inc = "".join(f'FLOWFM_EMU_KERNEL("{n}", {n})\n' for n in names)
    digest = hashlib.sha256(inc.encode())
    for f in sorted(list(csrc.glob("*.cu")) + list(csrc.glob("*.cuh")) + list((csrc / "testing").glob("*"))):
        digest.update(f.read_bytes())
    out_dir = Path(tmp_root) / digest.hexdigest()[:16]
    lib = out_dir / "libflowfm_emu.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "flowfm_emu_kernels.inc").write_text(inc)
    partial = out_dir / f"libflowfm_emu.{os.getpid()}.so"
    cmd = [cxx, "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-Wall", "-Wextra", "-Wno-unknown-pragmas",
           "-Werror", f"-I{csrc}", f"-I{out_dir}", f"-I{os.path.join(root, 'include')}",
           str(csrc / "testing" / "cpu_emulation.cpp"), "-o", str(partial)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        if "cuda_fp16.h" in proc.stderr and "No such file" in proc.stderr:
            return None
        raise AssertionError("building the CPU emulation of the kernels failed:\n" + proc.stderr[-6000:])
    os.replace(partial, lib)  # atomic: a concurrent session never loads a half-written library
    return lib


def load_emulation(tmp_root: Path):
    """``ctypes.CDLL`` of the emulation library, or None when it cannot be built here."""
    path = build_emulation(tmp_root)
    if path is None:
        return None
    handle = ctypes.CDLL(str(path))
    assert handle.flowfm_emu_kernel_count() == len(_cupy_jit.name_expressions())
    return handle


@pytest.fixture(scope="session")
def emu_lib(tmp_path_factory):
    """The compiled CPU emulation of the kernels module, shared by every test file that imports this fixture."""
    lib = load_emulation(tmp_path_factory.getbasetemp() / "flowfm_cuda_emu")
    if lib is None:
        pytest.skip("the CPU emulation needs g++ (C++20) and the CUDA headers (cuda_fp16.h)")
    return lib


# ------------------------------------------------------------------------------------------------ op test backends
# The ``backend`` fixture runs an op test through the emulation here and, with ``@pytest.mark.gpu``, on a GPU through
# the compiled extension and the JIT build. A test module that uses it imports ``backend`` and ``emu_lib``.
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


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


def randn(shape, dtype, device, gen, scale=1.0, offset=0.0):
    return (torch.randn(shape, generator=gen) * scale + offset).to(device=device, dtype=dtype)
