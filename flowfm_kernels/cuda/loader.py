"""Finds the CUDA kernels: the compiled pybind11 module ``flowfm_kernels._C``, else a CuPy/NVRTC JIT build of the
same ``csrc/*.cu`` sources. (Placeholder until the CUDA C++ extension lands: reports the module as absent.)"""
from __future__ import annotations

from typing import Optional


def unavailable_reason() -> Optional[str]:
    return "the CUDA C++ module flowfm_kernels._C is not built yet"
