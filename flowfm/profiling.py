"""NVTX ranges for Nsight Systems: ``with nvtx_range("flowfm/encode"): ...``.

Ranges are pushed only when a CUDA device is in use, through the ``nvtx`` package (or ``torch.cuda.nvtx`` when that
package is missing or broken, as on an image without it); on CPU-only runs :func:`nvtx_range` returns a shared no-op
context (no allocation, no call).
Names used: ``flowfm/encode``, ``flowfm/velocity``, ``flowfm/solver_step``, ``flowfm/loss``, ``flowfm/backward``,
``flowfm/optimizer_step``, ``flowfm/sample``.
"""
from __future__ import annotations

import contextlib
import functools

import torch

_NOOP = contextlib.nullcontext()


@functools.lru_cache(maxsize=1)
def _annotate():
    if not torch.cuda.is_available():
        return None
    try:
        import nvtx

        annotate = nvtx.annotate
    except Exception:  # missing (the GPU image has no nvtx package) or broken: torch's own NVTX bindings
        return torch.cuda.nvtx.range
    return lambda name: annotate(name, domain="flowfm")


def nvtx_range(name: str):
    """A context manager marking ``name`` on the NVTX timeline when CUDA is available, else a no-op."""
    annotate = _annotate()
    return _NOOP if annotate is None else annotate(name)
