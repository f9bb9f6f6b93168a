"""Build-time decisions for the CUDA C++ extension, as pure functions (stdlib only).

``setup.py`` loads this file by path (it must not import ``flowfm_kernels``, which imports torch), and the tests
import it normally with monkeypatched environments and file systems. The runtime loader reuses
:func:`find_cuda_root` to point NVRTC at the CUDA headers.

Environment variables:

``FLOWFM_BUILD_CUDA``  ``auto`` (default): build ``flowfm_kernels._C`` when nvcc and a CUDA root are found *and* a GPU
                       is visible (``/dev/nvidia0`` or ``nvidia-smi -L``), else install pure Python with a note;
                       ``1``: build, and fail loudly if it cannot; ``0``: never build.
``FLOWFM_CUDA_ARCH``   GPU architectures for nvcc, e.g. ``sm_90`` (default), ``90``, ``sm_90a``, ``80,90``.
``CUDA_HOME`` / ``CUDA_PATH``  the CUDA toolkit root; else the root of the *real* path of nvcc (``$NVCC`` or
                       ``nvcc`` on ``PATH``, symlinks resolved: ``<root>/bin/nvcc``), accepted only when that root
                       holds ``include/cuda_runtime_api.h`` (so a wrapper script such as ``/usr/local/bin/nvcc``
                       never makes ``/usr/local`` the root); else ``/usr/local/cuda``, then ``/opt/cuda``.
``NVCC``               the nvcc to use when ``<root>/bin/nvcc`` does not exist (else ``nvcc`` on ``PATH``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

STANDARD_CUDA_ROOTS = ("/usr/local/cuda", "/opt/cuda")
DEFAULT_ARCH = "sm_90"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def find_cuda_root(environ: Optional[Mapping[str, str]] = None,
                   isdir: Callable[[str], bool] = os.path.isdir,
                   isfile: Callable[[str], bool] = os.path.isfile,
                   which: Optional[Callable[[str], Optional[str]]] = None,
                   realpath: Callable[[str], str] = os.path.realpath) -> Optional[str]:
    """The CUDA toolkit root: ``$CUDA_HOME``, ``$CUDA_PATH``, the root of nvcc's real path, ``/usr/local/cuda``,
    ``/opt/cuda``, the first that is a directory holding ``include/`` (the headers both nvcc and NVRTC need).

    nvcc's root (``realpath(nvcc)`` = ``<root>/bin/nvcc``; nvcc from ``$NVCC``, else ``PATH``) must also hold
    ``include/cuda_runtime_api.h``: a wrapper script's real path is the script itself, and its parent's parent
    (``/usr/local`` for ``/usr/local/bin/nvcc``) is not a toolkit. ``which`` defaults to a ``PATH`` lookup in
    ``environ``'s ``PATH`` (the process's when ``environ`` has none).
    """
    env = os.environ if environ is None else environ
    if which is None:
        def which(name: str) -> Optional[str]:
            return shutil.which(name, path=env.get("PATH"))

    def usable(root: str) -> bool:
        return bool(root) and isdir(root) and isdir(os.path.join(root, "include"))

    for root in (env.get("CUDA_HOME", ""), env.get("CUDA_PATH", "")):
        root = root.strip()
        if usable(root):
            return os.path.normpath(root)
    nvcc = _nvcc_from_environment(env, which)
    if nvcc:
        real = realpath(nvcc)
        root = os.path.dirname(os.path.dirname(real))
        if (os.path.basename(os.path.dirname(real)) == "bin" and usable(root)
                and isfile(os.path.join(root, "include", "cuda_runtime_api.h"))):
            return os.path.normpath(root)
    for root in STANDARD_CUDA_ROOTS:
        if usable(root):
            return os.path.normpath(root)
    return None


def _nvcc_from_environment(env: Mapping[str, str], which: Callable[[str], Optional[str]]) -> Optional[str]:
    """``$NVCC`` if set, else ``nvcc`` on ``PATH`` (either may be a wrapper script)."""
    if env.get("NVCC", "").strip():
        return env["NVCC"].strip()
    return which("nvcc")


def find_nvcc(cuda_root: Optional[str], environ: Optional[Mapping[str, str]] = None,
              isfile: Callable[[str], bool] = os.path.isfile,
              which: Callable[[str], Optional[str]] = shutil.which) -> Optional[str]:
    """``<root>/bin/nvcc`` if it exists, else ``$NVCC``, else ``nvcc`` on ``PATH`` (it may be a wrapper script)."""
    env = os.environ if environ is None else environ
    if cuda_root:
        candidate = os.path.join(cuda_root, "bin", "nvcc")
        if isfile(candidate):
            return candidate
    return _nvcc_from_environment(env, which)


def gpu_visible(exists: Callable[[str], bool] = os.path.exists,
                which: Callable[[str], Optional[str]] = shutil.which,
                run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool:
    """True when an NVIDIA GPU is visible: ``/dev/nvidia0`` exists or ``nvidia-smi -L`` lists a GPU."""
    if exists("/dev/nvidia0"):
        return True
    smi = which("nvidia-smi")
    if not smi:
        return False
    try:
        proc = run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "GPU" in (proc.stdout or "")


@dataclass(frozen=True)
class BuildDecision:
    build: bool      # compile flowfm_kernels._C
    required: bool   # a failed build is an error (FLOWFM_BUILD_CUDA=1) rather than a note (auto)
    reason: str      # one line for the build log


def build_mode(environ: Optional[Mapping[str, str]] = None) -> str:
    """``"auto"``, ``"1"`` or ``"0"`` from ``$FLOWFM_BUILD_CUDA`` (ValueError on anything else)."""
    env = os.environ if environ is None else environ
    raw = env.get("FLOWFM_BUILD_CUDA", "auto").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in _TRUE:
        return "1"
    if raw in _FALSE:
        return "0"
    raise ValueError(f"FLOWFM_BUILD_CUDA={raw!r}: expected auto, 1 or 0")


def decide_build(mode: str, cuda_root: Optional[str], nvcc: Optional[str], gpu: bool) -> BuildDecision:
    """Whether to build the extension, from the mode and what was found (no side effects)."""
    if mode == "0":
        return BuildDecision(False, False, "FLOWFM_BUILD_CUDA=0: installing without the CUDA C++ extension")
    missing = [what for what, ok in (("a CUDA toolkit root (set CUDA_HOME)", cuda_root), ("nvcc", nvcc)) if not ok]
    if mode == "1":
        if missing:
            raise RuntimeError("FLOWFM_BUILD_CUDA=1 but the CUDA C++ extension cannot be built: no "
                               + " and no ".join(missing) + " found")
        return BuildDecision(True, True, f"FLOWFM_BUILD_CUDA=1: building flowfm_kernels._C with {nvcc}")
    if mode != "auto":
        raise ValueError(f"unknown FLOWFM_BUILD_CUDA mode {mode!r}")
    if missing:
        return BuildDecision(False, False, "FLOWFM_BUILD_CUDA=auto: no " + " and no ".join(missing)
                             + "; installing without the CUDA C++ extension (the CuPy JIT path can still be used)")
    if not gpu:
        return BuildDecision(False, False, "FLOWFM_BUILD_CUDA=auto: no GPU visible (no /dev/nvidia0, no nvidia-smi);"
                             " installing without the CUDA C++ extension (FLOWFM_BUILD_CUDA=1 forces the build)")
    return BuildDecision(True, False, f"FLOWFM_BUILD_CUDA=auto: CUDA at {cuda_root} and a GPU found: building "
                         f"flowfm_kernels._C with {nvcc}")


def decide_from_environment(environ: Optional[Mapping[str, str]] = None) -> tuple[BuildDecision, Optional[str],
                                                                                 Optional[str]]:
    """(decision, cuda_root, nvcc) for this machine. GPU detection runs only when it matters (mode auto)."""
    mode = build_mode(environ)
    if mode == "0":
        return decide_build(mode, None, None, False), None, None
    root = find_cuda_root(environ)
    nvcc = find_nvcc(root, environ)
    gpu = gpu_visible() if (mode == "auto" and root and nvcc) else False
    return decide_build(mode, root, nvcc, gpu), root, nvcc


_ARCH_RE = re.compile(r"^(?:sm_|compute_)?(\d{2,3}[a-z]?)$")


def parse_archs(value: Optional[str] = None) -> list[str]:
    """``"sm_90"`` / ``"90"`` / ``"80,90"`` / ``"sm_90a"`` -> ``["90"]``, ``["80", "90"]``, ``["90a"]``."""
    raw = (value if value is not None else DEFAULT_ARCH).strip() or DEFAULT_ARCH
    archs = []
    for part in re.split(r"[,; ]+", raw):
        if not part:
            continue
        match = _ARCH_RE.match(part.strip().lower())
        if not match:
            raise ValueError(f"FLOWFM_CUDA_ARCH: {part!r} is not a CUDA architecture such as sm_90 or 90")
        if match.group(1) not in archs:
            archs.append(match.group(1))
    return archs


def gencode_flags(archs: Sequence[str]) -> list[str]:
    """SASS for every arch, plus PTX of the last one (forward compatibility with newer GPUs)."""
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return flags


def nvcc_compile_command(nvcc: str, source: str, output: str, include_dirs: Sequence[str],
                         archs: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """nvcc command compiling one .cu into a position-independent object for a Python extension."""
    cmd = [nvcc, "-c", source, "-o", output, "-O3", "-std=c++17", "-DNDEBUG",
           "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden", *gencode_flags(archs)]
    for d in include_dirs:
        cmd += ["-I", d]
    return cmd + list(extra)


def cuda_library_dirs(cuda_root: str, isdir: Callable[[str], bool] = os.path.isdir) -> list[str]:
    """Where libcudart_static.a lives under the root."""
    dirs = [os.path.join(cuda_root, sub) for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                                                     os.path.join("targets", "sbsa-linux", "lib"))]
    return [d for d in dirs if isdir(d)]
