"""Finds the CUDA kernels: the compiled pybind11 module ``flowfm_kernels._C``, else a CuPy/NVRTC JIT build of the
same ``csrc/*.cu`` sources (:mod:`flowfm_kernels.cuda._cupy_jit`). Both expose the same functions.

Nothing is imported or compiled at ``import flowfm`` time: the first :func:`unavailable_reason` /
:func:`get_module` call (from the dispatcher, on a CUDA tensor) does it once and caches the outcome.

Environment variables:

``FLOWFM_CUDA_IMPL``  ``auto`` (default: the extension if it imports and runs, else the CuPy JIT), ``ext`` (only the
                      compiled extension) or ``jit`` (only the CuPy/NVRTC JIT build).
``CUDA_HOME`` / ``CUDA_PATH``  CUDA toolkit whose ``include/`` NVRTC may need for ``cuda_fp16.h`` / ``cuda_bf16.h``.
"""
from __future__ import annotations

import functools
import importlib
import os
import re
from typing import Any, Optional

IMPL_ENV = "FLOWFM_CUDA_IMPL"
IMPLS = ("auto", "ext", "jit")
_REASON_MAX_CHARS = 600


class CudaKernelsUnavailable(RuntimeError):
    """Neither the compiled extension nor the CuPy JIT build can run here; the message says why."""


def _one_line(text: str) -> str:
    line = re.sub(r"\s+", " ", str(text)).strip()
    return line if len(line) <= _REASON_MAX_CHARS else line[:_REASON_MAX_CHARS - 3] + "..."


def requested_impl() -> str:
    """``auto`` | ``ext`` | ``jit`` from ``$FLOWFM_CUDA_IMPL`` (ValueError on anything else)."""
    raw = os.environ.get(IMPL_ENV, "auto").strip().lower() or "auto"
    if raw not in IMPLS:
        raise ValueError(f"{IMPL_ENV}={raw!r}; expected one of {IMPLS}")
    return raw


def gpu_unavailable_reason() -> Optional[str]:
    """``None`` when torch sees a CUDA GPU, else why not."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return _one_line(f"torch cannot be imported ({exc!r})")
    if torch.version.cuda is None:
        return f"no CUDA GPU: this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


@functools.lru_cache(maxsize=None)
def _load_ext() -> tuple[Optional[Any], Optional[str]]:
    """(module, None) when ``flowfm_kernels._C`` imports and can reach the GPU, else (None, reason)."""
    try:
        module = importlib.import_module("flowfm_kernels._C")
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken .so
        return None, _one_line(f"the compiled extension flowfm_kernels._C is not available "
                               f"({type(exc).__name__}: {exc}); build it with FLOWFM_BUILD_CUDA=1 pip install -e .")
    try:
        module.current_device_sm_count()  # exercises the (static) CUDA runtime against the driver
    except Exception as exc:  # noqa: BLE001
        return None, _one_line(f"flowfm_kernels._C cannot use the GPU ({exc})")
    return module, None


@functools.lru_cache(maxsize=None)
def _load_jit() -> tuple[Optional[Any], Optional[str]]:
    """(JitKernels, None) when CuPy + NVRTC compile the csrc sources for the current GPU, else (None, reason)."""
    try:
        importlib.import_module("cupy")
    except Exception as exc:  # noqa: BLE001
        return None, _one_line(f"the CuPy JIT fallback needs cupy (pip install cupy-cuda13x): "
                               f"{type(exc).__name__}: {exc}")
    from flowfm_kernels.cuda import _cupy_jit

    source_dir = _cupy_jit.find_source_dir()
    if source_dir is None:
        looked = ", ".join(str(d) for d in _cupy_jit.candidate_source_dirs())
        return None, f"the CuPy JIT fallback cannot find the csrc/*.cu sources (looked in {looked})"
    # First with CuPy's own header search (it knows where its NVRTC's headers are), then adding the toolkit's include/.
    attempts = [[]]
    toolkit_include = _cupy_jit.cuda_include_dirs()
    if toolkit_include:
        attempts.append(toolkit_include)
    errors = []
    for extra in attempts:
        try:
            module = _cupy_jit.JitKernels(source_dir, extra)
            module.compile()
            return module, None
        except Exception as exc:  # noqa: BLE001 - CompileException, CUDA errors, ...
            errors.append(f"{type(exc).__name__}: {exc}")
    return None, _one_line("the CuPy JIT build of csrc/*.cu failed: " + " | then, with -I<CUDA>/include: ".join(errors))


def _select() -> tuple[Optional[Any], Optional[str]]:
    reason = gpu_unavailable_reason()
    if reason:
        return None, reason
    impl = requested_impl()
    reasons = []
    if impl in ("auto", "ext"):
        module, why = _load_ext()
        if module is not None:
            return module, None
        reasons.append(why)
    if impl in ("auto", "jit"):
        module, why = _load_jit()
        if module is not None:
            return module, None
        reasons.append(why)
    suffix = f" ({IMPL_ENV}={impl})" if impl != "auto" else ""
    return None, _one_line("; and ".join(reasons) + suffix)


def unavailable_reason() -> Optional[str]:
    """``None`` when the CUDA kernels can run (a GPU and ``_C`` or a CuPy JIT build), else a one-line reason."""
    try:
        return _select()[1]
    except ValueError as exc:  # a bad FLOWFM_CUDA_IMPL
        return str(exc)


def get_module() -> Any:
    """The kernels module (``flowfm_kernels._C`` or the CuPy JIT build); :class:`CudaKernelsUnavailable` if none."""
    module, reason = _select()
    if module is None:
        raise CudaKernelsUnavailable(f"flowfm CUDA kernels are unavailable: {reason}")
    return module


def implementation() -> Optional[str]:
    """``"ext"`` or ``"jit"`` for the module :func:`get_module` returns, ``None`` if unavailable."""
    module, _ = _select()
    return None if module is None else getattr(module, "IMPLEMENTATION", "ext")


def clear_cache() -> None:
    """Forget the cached import / JIT outcomes (tests; after building the extension in-process)."""
    _load_ext.cache_clear()
    _load_jit.cache_clear()
