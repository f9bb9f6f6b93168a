"""Build script: a pure-Python install by default; the CUDA C++ extension ``flowfm_kernels._C`` when asked for.

``FLOWFM_BUILD_CUDA`` = ``auto`` (default: build when nvcc, a CUDA root and a GPU are all found, else skip with a
note), ``1`` (build or fail loudly), ``0`` (never). ``FLOWFM_CUDA_ARCH`` picks the GPU architectures (default
``sm_90``). The CUDA root is ``$CUDA_HOME`` (or ``$CUDA_PATH``), else the toolkit holding the real path of
``nvcc`` (symlinks resolved; a wrapper script is not taken for a toolkit), else ``/usr/local/cuda`` / ``/opt/cuda``
(``_build.find_cuda_root``). The decisions live in ``flowfm_kernels/cuda/_build.py`` (pure functions, tested).
Whatever is built, ``csrc/*.cu`` / ``*.cuh`` / ``*.h`` are copied into the package (``flowfm_kernels/csrc/``) so
that the CuPy/NVRTC JIT fallback finds its sources in a regular install too; an editable install reads them from
the repository's csrc/.

Nothing here touches the network, and a machine without nvcc installs fine.
"""
import glob
import importlib.util
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
RUNTIME_SOURCE_PATTERNS = ("*.cu", "*.cuh", "*.h")  # what the JIT path needs at run time
EXTENSION_CU = ("gn_film_silu.cu", "fm_loss.cu", "ode_steps.cu")
EXTENSION_CPP = ("bindings.cpp",)


def _load_build_helpers():
    path = os.path.join(ROOT, "flowfm_kernels", "cuda", "_build.py")
    spec = importlib.util.spec_from_file_location("_flowfm_cuda_build", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


helpers = _load_build_helpers()


def _note(message: str) -> None:
    print(f"flowfm setup: {message}", file=sys.stderr, flush=True)


class BuildPyWithCudaSources(build_py):
    """Also ships csrc/*.cu, *.cuh, *.h as package data under flowfm_kernels/csrc/ (the JIT path reads them)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's csrc/ directly
        sources = [src for pattern in RUNTIME_SOURCE_PATTERNS
                   for src in sorted(glob.glob(os.path.join(ROOT, CSRC, pattern)))]
        if not sources:
            _note("WARNING: no csrc/*.cu sources next to setup.py (an sdist without them?): the CuPy JIT fallback "
                  "will not find its sources in this install")
            return
        target = os.path.join(self.build_lib, "flowfm_kernels", "csrc")
        self.mkpath(target)
        for src in sources:
            self.copy_file(src, os.path.join(target, os.path.basename(src)))


class CudaBuildExt(build_ext):
    """Compiles the .cu sources of an extension with nvcc, the rest with the C++ compiler, links with it.

    A failure is fatal with FLOWFM_BUILD_CUDA=1; with auto it is reported and the install goes on without _C.
    """

    cuda_root = None
    nvcc = None
    required = False

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure
            if self.required:
                raise
            _note(f"WARNING: building the CUDA C++ extension failed ({exc}); installing without it. "
                  "Set FLOWFM_BUILD_CUDA=1 to make this an error, FLOWFM_BUILD_CUDA=0 to skip the attempt.")

    def build_extension(self, ext):
        cu_sources = [s for s in ext.sources if s.endswith(".cu")]
        if not cu_sources:
            return super().build_extension(ext)
        archs = helpers.parse_archs(os.environ.get("FLOWFM_CUDA_ARCH"))
        build_temp = os.path.abspath(os.path.join(self.build_temp, "cuda"))
        os.makedirs(build_temp, exist_ok=True)
        objects = []
        for src in cu_sources:
            obj = os.path.join(build_temp, os.path.splitext(os.path.basename(src))[0] + ".cu.o")
            cmd = helpers.nvcc_compile_command(self.nvcc, os.path.join(ROOT, src), obj,
                                               [os.path.join(ROOT, CSRC)], archs)
            host_cxx = os.environ.get("CXX")
            if host_cxx:
                cmd += ["-ccbin", host_cxx]
            _note(" ".join(cmd))
            subprocess.run(cmd, check=True)
            objects.append(obj)
        ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
        ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)


def _extensions(decision, cuda_root):
    if not decision.build:
        return []
    try:
        import pybind11  # a build requirement (pyproject.toml); only needed when compiling
    except ImportError as exc:
        message = ("the CUDA C++ extension needs pybind11 at build time (pip install pybind11, or let pip build in "
                   f"an isolated environment): {exc}")
        if decision.required:
            raise RuntimeError(f"FLOWFM_BUILD_CUDA=1 but {message}") from exc
        _note(f"WARNING: {message}; installing without it")
        return []

    return [Extension(
        "flowfm_kernels._C",
        sources=[f"{CSRC}/{name}" for name in EXTENSION_CU + EXTENSION_CPP],
        include_dirs=[os.path.join(ROOT, CSRC), pybind11.get_include()],
        library_dirs=helpers.cuda_library_dirs(cuda_root),
        libraries=["cudart_static", "rt", "pthread", "dl"],
        extra_compile_args=["-O3", "-g0", "-std=c++17", "-fvisibility=hidden", "-DNDEBUG"],
        language="c++",
    )]


decision, cuda_root, nvcc = helpers.decide_from_environment()
_note(decision.reason)
CudaBuildExt.cuda_root, CudaBuildExt.nvcc, CudaBuildExt.required = cuda_root, nvcc, decision.required

setup(
    ext_modules=_extensions(decision, cuda_root),
    cmdclass={"build_py": BuildPyWithCudaSources, "build_ext": CudaBuildExt},
)
