"""Host-side plumbing shared by the per-op CUDA wrappers (``flowfm_kernels/<op>/cuda.py``).

Each wrapper checks devices and shapes, makes its inputs contiguous (a copy only when a tensor is not), allocates
outputs and workspaces with torch and passes ``data_ptr()``s and the current stream of the tensors' device to the
kernels module of :func:`flowfm_kernels.cuda.loader.get_module` (the compiled ``flowfm_kernels._C`` or its
CuPy/NVRTC JIT twin; the same calls either way).

Storage dtypes float32, float16 and bfloat16 run in the kernels (fp32 arithmetic inside). Anything else (float64,
mixed dtypes inside one group of inputs that the kernels take as one type, a tensor-valued guidance / sigma_min,
empty tensors, an ``out`` of another dtype than the result) runs the eager reference instead, so results never
silently lose precision.
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Optional

import torch

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

__all__ = ["DTYPE_CODES"]


# Tests only (tests/cuda_emulation.py users): lets CPU tensors through to a CPU emulation of the kernels module.
_ALLOW_CPU_TENSORS = False


def ptr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def stream(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # only with _ALLOW_CPU_TENSORS (emulation)
    return torch.cuda.current_stream(device).cuda_stream


def device_guard(device: torch.device):
    """Makes ``device`` current for the launch (the kernels run on the calling thread's current device)."""
    if device.type != "cuda" or device.index is None or device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def check_device(fn: str, device: torch.device, **tensors: Optional[torch.Tensor]) -> None:
    if device.type != "cuda" and not (_ALLOW_CPU_TENSORS and device.type == "cpu"):
        raise ValueError(f"{fn}: the cuda backend needs CUDA tensors, got a tensor on {device}")
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{fn}: {name} is on {t.device} but the other inputs are on {device}")


def check_same_shape(fn: str, **tensors: Optional[torch.Tensor]) -> tuple[int, ...]:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    first = next(iter(shapes.values()))
    if len(first) != 3 or any(s != first for s in shapes.values()):
        raise ValueError(f"{fn}: expected tensors of one shape (B, C, L), got {shapes}")
    return first


def kernel_dtype(*tensors: Optional[torch.Tensor]) -> Optional[torch.dtype]:
    """The common kernel dtype of ``tensors`` (Nones ignored), or None if they differ or are unsupported."""
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    return dtype if dtype in DTYPE_CODES else None


def requires_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def contig(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.contiguous()


def f32(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().to(dtype=torch.float32).contiguous()


def per_sample_f32(fn: str, name: str, t: torch.Tensor, B: int, device: torch.device) -> torch.Tensor:
    """A (B,) float32 contiguous copy of a per-sample tensor (a single value is broadcast)."""
    t = t.detach().to(device=device, dtype=torch.float32).reshape(-1)
    if t.numel() == 1 and B != 1:
        t = t.expand(B)
    if t.numel() != B:
        raise ValueError(f"{fn}: {name} must have shape (B,) = ({B},), got {t.numel()} values")
    return t.contiguous()


def is_number(x) -> bool:
    """A Python / NumPy real number (a tensor-valued argument runs the eager reference)."""
    return isinstance(x, numbers.Real)


def step_out(out: Optional[torch.Tensor], shape, dtype: torch.dtype, device: torch.device):
    """(buffer the kernel writes, tensor to copy it into afterwards or None)."""
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device), None
    if out.is_contiguous():
        return out, None
    return torch.empty(shape, dtype=dtype, device=device), out
