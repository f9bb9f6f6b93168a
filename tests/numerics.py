"""Numerical test helpers: NaN-poisoned outputs, non-contiguous copies, relative-RMS closeness by dtype."""
from __future__ import annotations

import contextlib

import torch

# relative RMS error tolerated per compute dtype of the *inputs* (kernels compute in fp32 inside)
REL_RMS_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def rel_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||a - e||_2 / max(||e||_2, tiny), both in float64."""
    a, e = actual.detach().double(), expected.detach().double()
    return float((a - e).norm() / e.norm().clamp_min(1e-30))


def assert_rel_rms(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = "") -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values in output (NaN poison left behind?)"
    err = rel_rms(actual, expected)
    assert err <= tol, f"{what}: relative RMS error {err:.3e} > {tol:.1e}"


def nan_poisoned_like(t: torch.Tensor) -> torch.Tensor:
    """An output buffer filled with NaN, so a kernel that forgets to write an element is caught."""
    return torch.full_like(t, float("nan"))


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t`` in a non-contiguous view (every other element of a wider last dimension)."""
    wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    view = wide[..., ::2]
    view.copy_(t)
    assert not view.is_contiguous()
    return view


@contextlib.contextmanager
def no_tf32():
    """True fp32 for eager convolutions and matmuls on a GPU (cuDNN and cuBLAS may use TF32 by default); a no-op
    elsewhere. Eager references compared at fp32 tolerances must run inside it."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
