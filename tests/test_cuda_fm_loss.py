"""CUDA C++ flow-matching loss and interpolation against the eager references (CPU emulation of CUDA, and on a
GPU with ``@pytest.mark.gpu``): mixed dtypes, odd sizes, gradients, non-contiguous inputs.
"""
from __future__ import annotations

import pytest
import torch

from flowfm_kernels.fm_loss.cuda import flow_matching_loss_cuda, interpolate_cuda
from flowfm_kernels.fm_loss.reference import flow_matching_loss_ref, interpolate_ref
from tests.cuda_emulation import DTYPES, randn
from tests.cuda_emulation import backend, emu_lib, poison_allocations  # noqa: F401 (pytest fixtures)
from tests.numerics import REL_RMS_TOL, assert_rel_rms, non_contiguous


LOSS_SHAPES = [(1, 3, 1), (3, 3, 17), (3, 3, 300), (2, 5, 301), (1, 3, 299), (2, 7, 1200)]


@pytest.mark.parametrize("v_dtype, x_dtype", [(d, d) for d in DTYPES] + [(torch.bfloat16, torch.float32),
                                                                         (torch.float32, torch.float16)])
@pytest.mark.parametrize("B, C, L", LOSS_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_flow_matching_loss(backend, poison_allocations, v_dtype, x_dtype, B, C, L, reduction):
    gen = torch.Generator().manual_seed(B + C + L)
    v = randn((B, C, L), v_dtype, backend.device, gen)
    x0 = randn((B, C, L), x_dtype, backend.device, gen)
    x1 = randn((B, C, L), x_dtype, backend.device, gen)
    for sigma_min in (0.0, 0.05):
        with torch.no_grad():
            loss = flow_matching_loss_cuda(v, x0, x1, sigma_min, reduction)
        ref = flow_matching_loss_ref(v, x0, x1, sigma_min, reduction)
        assert loss.dtype == torch.float32 and loss.shape == ref.shape
        assert_rel_rms(loss, ref, 1e-5, f"fm loss {reduction} {v_dtype}/{x_dtype} s={sigma_min}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "per_sample"])
def test_flow_matching_loss_gradients(backend, poison_allocations, dtype, reduction):
    gen = torch.Generator().manual_seed(4)
    B, C, L = 3, 3, 301
    tensors = [randn((B, C, L), dtype, backend.device, gen) for _ in range(3)]
    weights = randn((B,), torch.float32, backend.device, gen)
    grads = []
    for fn in (flow_matching_loss_cuda, flow_matching_loss_ref):
        leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
        loss = fn(*leaves, 0.1, reduction)
        (3.0 * loss if reduction == "mean" else (loss * weights).sum()).backward()
        grads.append([t.grad for t in leaves])
    for name, got, want in zip(("dv", "dx0", "dx1"), *grads):
        assert got.dtype == dtype
        assert_rel_rms(got, want, REL_RMS_TOL[dtype], f"fm loss {name} {reduction} {dtype}")


def test_flow_matching_loss_noncontiguous_and_grad_only_for_v(backend):
    gen = torch.Generator().manual_seed(8)
    v, x0, x1 = (non_contiguous(randn((2, 3, 50), torch.float32, backend.device, gen)) for _ in range(3))
    v_leaf = v.detach().clone().requires_grad_(True)
    loss = flow_matching_loss_cuda(v_leaf, x0, x1)
    loss.backward()
    v_ref = v.detach().clone().requires_grad_(True)
    flow_matching_loss_ref(v_ref, x0, x1).backward()
    assert_rel_rms(loss.detach(), flow_matching_loss_ref(v, x0, x1), 1e-5, "loss non-contiguous")
    assert_rel_rms(v_leaf.grad, v_ref.grad, 1e-5, "dv non-contiguous")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L", LOSS_SHAPES)
def test_interpolate(backend, poison_allocations, dtype, B, C, L):
    gen = torch.Generator().manual_seed(2 * B + L)
    x0 = randn((B, C, L), dtype, backend.device, gen)
    x1 = randn((B, C, L), dtype, backend.device, gen)
    t = torch.rand(B, generator=gen).to(backend.device)
    for sigma_min in (0.0, 0.01):
        xt = interpolate_cuda(x0, x1, t, sigma_min)
        assert xt.dtype == dtype
        assert_rel_rms(xt, interpolate_ref(x0, x1, t, sigma_min), REL_RMS_TOL[dtype],
                       f"interpolate {dtype} {(B, C, L)}")


def test_interpolate_noncontiguous(backend):
    gen = torch.Generator().manual_seed(6)
    x0, x1 = (non_contiguous(randn((3, 3, 37), torch.float32, backend.device, gen)) for _ in range(2))
    t = torch.rand(3, generator=gen).to(backend.device)
    assert_rel_rms(interpolate_cuda(x0, x1, t), interpolate_ref(x0, x1, t), 1e-6, "interpolate non-contiguous")
