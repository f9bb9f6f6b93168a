"""CUDA C++ ODE-step updates against the eager references (CPU emulation of CUDA, and on a GPU with
``@pytest.mark.gpu``): mixed state / velocity dtypes, in-place and non-contiguous outputs, fallbacks.
"""
from __future__ import annotations

import pytest
import torch

from flowfm_kernels.ode_steps.cuda import euler_step_cuda, guidance_combine_cuda, heun_correct_cuda, rk4_combine_cuda
from flowfm_kernels.ode_steps.reference import euler_step_ref, guidance_combine_ref, heun_correct_ref, rk4_combine_ref
from tests.cuda_emulation import DTYPES, randn
from tests.cuda_emulation import backend, emu_lib  # noqa: F401 (pytest fixtures)
from tests.numerics import REL_RMS_TOL, assert_rel_rms, nan_poisoned_like, non_contiguous


STEP_SHAPES = [(1, 3, 1), (3, 3, 17), (3, 3, 299), (1, 4, 301), (2, 3, 300)]
STEP_DTYPES = [(d, d) for d in DTYPES] + [(torch.float32, torch.bfloat16), (torch.float32, torch.float16),
                                          (torch.bfloat16, torch.float32)]


def _step_tol(x_dtype, v_dtype):
    return max(REL_RMS_TOL[x_dtype], REL_RMS_TOL[v_dtype])


@pytest.mark.parametrize("x_dtype, v_dtype", STEP_DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_euler_step(backend, x_dtype, v_dtype, B, C, L, guided, out_mode):
    gen = torch.Generator().manual_seed(B * 7 + L)
    x = randn((B, C, L), x_dtype, backend.device, gen)
    v = randn((B, C, L), v_dtype, backend.device, gen)
    v_null = randn((B, C, L), v_dtype, backend.device, gen) if guided else None
    dt = (torch.rand(B, generator=gen) * 0.2 + 0.01).to(backend.device)
    w = 2.5 if guided else 1.0
    ref = euler_step_ref(x, v, dt, None, v_null, w)
    x_in = x.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(x), "inplace": x_in}[out_mode]
    got = euler_step_cuda(x_in, v, dt, out, v_null, w)
    if out is not None:
        assert got is out
    assert_rel_rms(got, ref, _step_tol(x_dtype, v_dtype), f"euler {x_dtype}/{v_dtype} {(B, C, L)} {out_mode}")


@pytest.mark.parametrize("x_dtype, v_dtype", STEP_DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("guidance_mode", ["none", "both", "first"])
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_heun_correct(backend, x_dtype, v_dtype, B, C, L, guidance_mode, out_mode):
    gen = torch.Generator().manual_seed(B * 11 + L)
    x = randn((B, C, L), x_dtype, backend.device, gen)
    v1, v2 = (randn((B, C, L), v_dtype, backend.device, gen) for _ in range(2))
    n1 = randn((B, C, L), v_dtype, backend.device, gen) if guidance_mode != "none" else None
    n2 = randn((B, C, L), v_dtype, backend.device, gen) if guidance_mode == "both" else None
    dt = (torch.rand(B, generator=gen) * 0.2 + 0.01).to(backend.device)
    ref = heun_correct_ref(x, v1, v2, dt, None, n1, n2, 1.8)
    x_in = x.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(x), "inplace": x_in}[out_mode]
    got = heun_correct_cuda(x_in, v1, v2, dt, out, n1, n2, 1.8)
    assert_rel_rms(got, ref, _step_tol(x_dtype, v_dtype), f"heun {x_dtype}/{v_dtype} {(B, C, L)} {guidance_mode}")


@pytest.mark.parametrize("x_dtype, v_dtype", STEP_DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace"])
def test_rk4_combine(backend, x_dtype, v_dtype, B, C, L, out_mode):
    gen = torch.Generator().manual_seed(B * 13 + L)
    x = randn((B, C, L), x_dtype, backend.device, gen)
    ks = [randn((B, C, L), v_dtype, backend.device, gen) for _ in range(4)]
    dt = (torch.rand(B, generator=gen) * 0.2 + 0.01).to(backend.device)
    ref = rk4_combine_ref(x, *ks, dt)
    x_in = x.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(x), "inplace": x_in}[out_mode]
    got = rk4_combine_cuda(x_in, *ks, dt, out)
    assert_rel_rms(got, ref, _step_tol(x_dtype, v_dtype), f"rk4 {x_dtype}/{v_dtype} {(B, C, L)} {out_mode}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L", STEP_SHAPES)
@pytest.mark.parametrize("out_mode", ["none", "poisoned", "inplace_v", "inplace_null"])
def test_guidance_combine(backend, dtype, B, C, L, out_mode):
    gen = torch.Generator().manual_seed(B * 17 + L)
    v, v_null = (randn((B, C, L), dtype, backend.device, gen) for _ in range(2))
    ref = guidance_combine_ref(v, v_null, 3.0)
    v_in, n_in = v.clone(), v_null.clone()
    out = {"none": None, "poisoned": nan_poisoned_like(v), "inplace_v": v_in, "inplace_null": n_in}[out_mode]
    got = guidance_combine_cuda(v_in, n_in, 3.0, out)
    assert_rel_rms(got, ref, REL_RMS_TOL[dtype], f"guidance {dtype} {(B, C, L)} {out_mode}")


def test_steps_with_noncontiguous_tensors(backend):
    gen = torch.Generator().manual_seed(12)
    B, C, L = 3, 3, 23
    x, v, vn = (non_contiguous(randn((B, C, L), torch.float32, backend.device, gen)) for _ in range(3))
    dt = torch.rand(B, generator=gen).to(backend.device)
    ref = euler_step_ref(x, v, dt, None, vn, 1.5)
    got = euler_step_cuda(x, v, dt, None, vn, 1.5)
    assert_rel_rms(got, ref, 1e-6, "euler non-contiguous inputs")
    out = non_contiguous(torch.full((B, C, L), float("nan"), device=backend.device))
    got = euler_step_cuda(x, v, dt, out, vn, 1.5)
    assert got is out
    assert_rel_rms(out, ref, 1e-6, "euler non-contiguous out")
    x_view = non_contiguous(x.contiguous())  # a fresh non-contiguous state updated in place
    ref2 = euler_step_ref(x_view, v, dt)
    got2 = euler_step_cuda(x_view, v, dt, x_view)
    assert got2 is x_view
    assert_rel_rms(x_view, ref2, 1e-6, "euler in place on a non-contiguous x")


def test_steps_scalar_dt_broadcasts_and_fallbacks(backend):
    gen = torch.Generator().manual_seed(13)
    x, v = (randn((2, 3, 8), torch.float32, backend.device, gen) for _ in range(2))
    dt1 = torch.tensor([0.25], device=backend.device)
    assert_rel_rms(euler_step_cuda(x, v, dt1), x + 0.25 * v, 1e-6, "dt broadcast")
    # float64 and tensor-valued guidance run the reference
    x64, v64 = x.double(), v.double()
    dt = torch.full((2,), 0.5, device=backend.device)
    torch.testing.assert_close(euler_step_cuda(x64, v64, dt), euler_step_ref(x64, v64, dt))
    w = torch.tensor(2.0, device=backend.device)
    torch.testing.assert_close(guidance_combine_cuda(x, v, w), guidance_combine_ref(x, v, w))
    # gradients through a step: the reference handles them
    xl = x.clone().requires_grad_(True)
    euler_step_cuda(xl, v, dt).sum().backward()
    torch.testing.assert_close(xl.grad, torch.ones_like(x))


def test_jit_argument_errors(backend):
    mod = backend.module
    with pytest.raises(ValueError, match="null pointer"):
        mod.euler_step(0, 0, 0, 0, 0, 1, 1, 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="dtype code"):
        mod.guidance_combine(16, 16, 16, 4, 1.0, 7, 0)
    with pytest.raises(ValueError, match="divisible"):
        mod.gn_fwd_workspace_bytes(2, 6, 5, 4)
    with pytest.raises(ValueError, match="workspace"):
        mod.fm_loss_fwd(16, 16, 16, 0, 16, 16, 0, 2, 8, 0.0, 0, 0, 0, 0)
