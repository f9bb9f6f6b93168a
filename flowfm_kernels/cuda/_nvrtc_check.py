"""Compile the JIT sources with NVRTC through ctypes, without a GPU and without CuPy (a CI / diagnostic check).

``python -m flowfm_kernels.cuda._nvrtc_check [--arch sm_90] [--lib /path/libnvrtc.so]`` compiles exactly what the
CuPy JIT path compiles (same source, options and name expressions) and checks that every name expression lowers
to a kernel. It needs libnvrtc (the CUDA toolkit's, or the ``nvidia-cuda-nvrtc`` wheel's: ``$FLOWFM_NVRTC_LIB``
points at it explicitly) and the CUDA headers (``$CUDA_HOME/include``).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import os
import site
import sys
from typing import Optional, Sequence


def find_libnvrtc() -> Optional[str]:
    """``$FLOWFM_NVRTC_LIB``, the CUDA root's lib64, the nvidia wheels in site-packages, then the loader's search."""
    explicit = os.environ.get("FLOWFM_NVRTC_LIB", "").strip()
    if explicit:
        return explicit
    from flowfm_kernels.cuda._build import find_cuda_root

    patterns = []
    root = find_cuda_root()
    if root:
        patterns += [os.path.join(root, sub, "libnvrtc.so*") for sub in ("lib64", "lib")]
    roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
    for sp in dict.fromkeys(r for r in roots if r and os.path.isdir(r)):
        patterns += [os.path.join(sp, "nvidia", "cu*", "lib", "libnvrtc.so*"),
                     os.path.join(sp, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")]
    for pattern in patterns:
        hits = sorted(p for p in glob.glob(pattern) if "builtins" not in os.path.basename(p))
        if hits:
            return hits[0]
    return ctypes.util.find_library("nvrtc")


class NvrtcError(RuntimeError):
    pass


def compile_sources(arch: str = "sm_90", lib_path: Optional[str] = None,
                    extra_options: Sequence[str] = ()) -> dict[str, str]:
    """Compile the JIT sources to a cubin for ``arch``; return {name expression: lowered (mangled) name}."""
    from flowfm_kernels.cuda import _cupy_jit as jit

    lib_path = lib_path or find_libnvrtc()
    if not lib_path:
        raise NvrtcError("libnvrtc not found (set FLOWFM_NVRTC_LIB or CUDA_HOME, or pip install nvidia-cuda-nvrtc)")
    nvrtc = ctypes.CDLL(lib_path)
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(result: int, what: str) -> None:
        if result != 0:
            raise NvrtcError(f"{what}: {nvrtc.nvrtcGetErrorString(result).decode()}")

    source_dir = jit.find_source_dir()
    if source_dir is None:
        raise NvrtcError(f"csrc sources not found in {jit.candidate_source_dirs()}")
    source = jit.jit_source(source_dir).encode()
    options = [*jit.jit_options(source_dir, jit.cuda_include_dirs()), f"-arch={arch}", *extra_options]
    names = jit.name_expressions()

    prog = ctypes.c_void_p()
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, b"flowfm_kernels_jit.cu", 0, None, None),
          "nvrtcCreateProgram")
    try:
        for name in names:
            check(nvrtc.nvrtcAddNameExpression(prog, name.encode()), f"nvrtcAddNameExpression({name})")
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        result = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        log_size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(log_size))
        log = ctypes.create_string_buffer(log_size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        log_text = log.value.decode(errors="replace").strip()
        if result != 0:
            raise NvrtcError(f"NVRTC compile failed ({nvrtc.nvrtcGetErrorString(result).decode()}) with options "
                             f"{options}:\n{log_text}")
        if log_text:
            raise NvrtcError(f"NVRTC compile produced warnings (treated as errors):\n{log_text}")
        lowered = {}
        for name in names:
            out = ctypes.c_char_p()
            check(nvrtc.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out)), f"nvrtcGetLoweredName({name})")
            lowered[name] = out.value.decode()
        cubin_size = ctypes.c_size_t()
        check(nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(cubin_size)), "nvrtcGetCUBINSize")
        if cubin_size.value == 0:
            raise NvrtcError("NVRTC produced an empty cubin")
        return lowered
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--lib", default=None, help="path of libnvrtc.so (default: search)")
    args = parser.parse_args(argv)
    lowered = compile_sources(args.arch, args.lib)
    print(f"NVRTC ({args.lib or find_libnvrtc()}): compiled {len(lowered)} kernels for {args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
