"""CUDA C++ GroupNorm + FiLM + SiLU, and the conv block built on it, against the eager references: through the CPU
emulation of CUDA (tests/cuda_emulation.py; needs g++ and the CUDA headers) and, with ``@pytest.mark.gpu``, on a GPU
through the extension and the JIT build. Odd sizes, fused and split paths, NaN-poisoned outputs, gradients,
determinism.
"""
from __future__ import annotations

import pytest
import torch

from flowfm_kernels.conv_block.cuda import conv_block_cuda
from flowfm_kernels.cuda import _cupy_jit
from flowfm_kernels.gn_film_silu.cuda import gn_film_silu_cuda
from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref
from tests.cuda_emulation import DTYPES, randn
from tests.cuda_emulation import backend, emu_lib, poison_allocations  # noqa: F401 (pytest fixtures)
from tests.numerics import REL_RMS_TOL, assert_rel_rms, non_contiguous


GN_SHAPES = [  # (B, C, L, G, sms): fused+cached, odd L, channel-crossing vectors, fused uncached, split paths
    (1, 4, 1, 2, 132), (3, 6, 17, 3, 132), (2, 8, 17, 2, 132), (1, 4, 299, 4, 132), (3, 12, 301, 3, 132),
    (2, 16, 300, 4, 132), (2, 4, 3001, 2, 1), (1, 3, 4999, 1, 132), (1, 4, 5000, 1, 2), (1, 3, 7001, 1, 2),
]


def _gn_inputs(B, C, L, dtype, device, gen, with_params=(True, True, True, True), param_dtype=torch.float32):
    h = randn((B, C, L), dtype, device, gen, scale=2.0, offset=0.5)
    gamma = randn((C,), param_dtype, device, gen, 0.5, 1.0) if with_params[0] else None
    beta = randn((C,), param_dtype, device, gen, 0.5) if with_params[1] else None
    scale = randn((B, C), param_dtype, device, gen, 0.3) if with_params[2] else None
    shift = randn((B, C), param_dtype, device, gen, 0.3) if with_params[3] else None
    return h, gamma, beta, scale, shift


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L, G, sms", GN_SHAPES)
def test_gn_film_silu_forward(backend, poison_allocations, dtype, B, C, L, G, sms):
    backend.set_sms(sms)
    gen = torch.Generator().manual_seed(B * 1000 + C * 10 + L)
    h, gamma, beta, scale, shift = _gn_inputs(B, C, L, dtype, backend.device, gen)
    with torch.no_grad():
        y = gn_film_silu_cuda(h, gamma, beta, scale, shift, G)
        ref = gn_film_silu_ref(h, gamma, beta, scale, shift, G)
    assert y.dtype == dtype and y.shape == h.shape
    assert_rel_rms(y, ref, REL_RMS_TOL[dtype], f"gn_film_silu {backend.name} {dtype} {(B, C, L, G)}")


@pytest.mark.parametrize("with_params", [(False, False, False, False), (True, True, False, False),
                                         (False, False, True, True), (True, False, True, False)])
def test_gn_film_silu_optional_parameters(backend, with_params):
    gen = torch.Generator().manual_seed(7)
    h, gamma, beta, scale, shift = _gn_inputs(3, 8, 33, torch.float32, backend.device, gen, with_params)
    with torch.no_grad():
        y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 4, eps=1e-3)
        ref = gn_film_silu_ref(h, gamma, beta, scale, shift, 4, eps=1e-3)
    assert_rel_rms(y, ref, REL_RMS_TOL[torch.float32], f"gn_film_silu params={with_params}")


def test_gn_film_silu_noncontiguous_and_large_mean(backend):
    """A large common offset (|mean| >> std) must not cost accuracy: the kernels normalise (h - mean) first."""
    gen = torch.Generator().manual_seed(3)
    h, gamma, beta, scale, shift = _gn_inputs(2, 8, 41, torch.float32, backend.device, gen)
    h = non_contiguous(h + 100.0)
    with torch.no_grad():
        y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 2)
        ref = gn_film_silu_ref(h, gamma, beta, scale, shift, 2)
    assert_rel_rms(y, ref, 1e-4, "gn_film_silu offset 100")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C, L, G, sms", [(3, 6, 17, 3, 132), (2, 8, 20, 2, 132), (1, 4, 301, 2, 132),
                                             (3, 16, 1, 2, 132), (1, 4, 5000, 1, 2), (1, 3, 7001, 1, 2)])
def test_gn_film_silu_backward(backend, poison_allocations, dtype, B, C, L, G, sms):
    backend.set_sms(sms)
    gen = torch.Generator().manual_seed(11 + L)
    inputs = _gn_inputs(B, C, L, dtype, backend.device, gen)
    dy = randn((B, C, L), dtype, backend.device, gen)
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    ref_leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = gn_film_silu_cuda(*leaves, G)
    y.backward(dy)
    ref = gn_film_silu_ref(*ref_leaves, G)
    ref.backward(dy)
    assert_rel_rms(y.detach(), ref.detach(), REL_RMS_TOL[dtype], "gn forward (autograd path)")
    tol = max(REL_RMS_TOL[dtype], 1e-4)  # fp32 gradients sum B*L products in another order than autograd
    for name, got, want in zip(("dh", "dgamma", "dbeta", "dscale", "dshift"), leaves, ref_leaves):
        assert got.grad is not None and got.grad.dtype == got.dtype, name
        assert_rel_rms(got.grad, want.grad, tol, f"gn {name} {backend.name} {dtype} {(B, C, L, G)}")


def test_gn_film_silu_backward_partial_requirements(backend):
    """Only some inputs need gradients: the others stay None (their kernels are skipped)."""
    gen = torch.Generator().manual_seed(5)
    h, gamma, beta, scale, shift = _gn_inputs(2, 8, 19, torch.float32, backend.device, gen)
    scale = scale.clone().requires_grad_(True)
    y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 4)
    y.sum().backward()
    scale_ref = scale.detach().clone().requires_grad_(True)
    gn_film_silu_ref(h, gamma, beta, scale_ref, shift, 4).sum().backward()
    assert h.grad is None and gamma.grad is None
    assert_rel_rms(scale.grad, scale_ref.grad, 1e-4, "dscale only")


@pytest.mark.parametrize("B, C, with_scale", [(1, 5, True), (32, 32, True), (33, 36, False), (300, 40, True)])
def test_gn_bwd_params_kernels_against_float64(backend, poison_allocations, B, C, with_scale):
    """The two dgamma / dbeta kernels alone (launched as gn_film_silu_bwd launches them): batch chunks of 32 rows
    and 32-channel tiles, partial last chunk and tile, against float64 sums; deterministic."""
    if backend.device != "cpu":
        pytest.skip("drives the JIT kernels directly (emulation only)")
    gen = torch.Generator().manual_seed(B + C)
    s1, s2 = (randn((B, C), torch.float32, "cpu", gen) for _ in range(2))
    scale = randn((B, C), torch.float32, "cpu", gen, 0.3) if with_scale else None
    chunks = _cupy_jit.gn_param_chunks(B)
    assert chunks == -(-B // 32)
    mod, p, i32, i64 = backend.module, backend.module._p, backend.module._i32, backend.module._i64

    def run():
        part = torch.empty((chunks, C, 2), dtype=torch.float32)
        dgamma, dbeta = torch.empty(C), torch.empty(C)
        with mod._device() as dev:
            stream = mod._stream(dev, 0)
            mod._launch(dev, stream, "flowfm::gn_bwd_params_partial_kernel",
                        (chunks * _cupy_jit.gn_param_tiles(C),),
                        (p(s1.data_ptr()), p(s2.data_ptr()), p(0 if scale is None else scale.data_ptr()),
                         p(part.data_ptr()), i64(B), i32(C), i32(_cupy_jit.GN_PARAM_ROWS)))
            mod._launch(dev, stream, "flowfm::gn_bwd_params_finalize_kernel", (-(-C // _cupy_jit.THREADS),),
                        (p(part.data_ptr()), p(dgamma.data_ptr()), p(dbeta.data_ptr()), i32(C), i64(chunks)))
        return dgamma, dbeta

    dgamma, dbeta = run()
    w = (1.0 + scale.double()) if scale is not None else torch.ones(B, C, dtype=torch.float64)
    assert_rel_rms(dgamma, (w * s2.double()).sum(0), 1e-6, f"dgamma {(B, C)}")
    assert_rel_rms(dbeta, (w * s1.double()).sum(0), 1e-6, f"dbeta {(B, C)}")
    again = run()
    assert torch.equal(dgamma, again[0]) and torch.equal(dbeta, again[1])


def test_gn_film_silu_param_grads_over_several_batch_chunks(backend, poison_allocations):
    """dgamma / dbeta through the full backward with B = 67 (three 32-row chunks, the last partial) and C = 36
    (two channel tiles); h needs no gradient, so only the row and parameter kernels run."""
    gen = torch.Generator().manual_seed(21)
    h, gamma, beta, scale, shift = _gn_inputs(67, 36, 4, torch.float32, backend.device, gen)
    dy = randn((67, 36, 4), torch.float32, backend.device, gen)
    leaves = [t.detach().clone().requires_grad_(True) for t in (gamma, beta)]
    refs = [t.detach().clone().requires_grad_(True) for t in (gamma, beta)]
    gn_film_silu_cuda(h, *leaves, scale, shift, 4).backward(dy)
    gn_film_silu_ref(h, *refs, scale, shift, 4).backward(dy)
    for name, got, want in zip(("dgamma", "dbeta"), leaves, refs):
        assert_rel_rms(got.grad, want.grad, 1e-5, f"{name} B=67")


def test_gn_film_silu_is_deterministic(backend):
    gen = torch.Generator().manual_seed(9)
    backend.set_sms(2)
    inputs = _gn_inputs(1, 4, 5000, torch.float32, backend.device, gen)  # split path: cross-block reductions
    dy = randn((1, 4, 5000), torch.float32, backend.device, gen)
    results = []
    for _ in range(2):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        y = gn_film_silu_cuda(*leaves, 1)
        y.backward(dy)
        results.append([y.detach()] + [t.grad for t in leaves])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_gn_film_silu_float64_runs_the_reference(backend):
    gen = torch.Generator().manual_seed(1)
    h, gamma, beta, scale, shift = _gn_inputs(2, 4, 9, torch.float64, backend.device, gen, param_dtype=torch.float64)
    y = gn_film_silu_cuda(h, gamma, beta, scale, shift, 2)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, gn_film_silu_ref(h, gamma, beta, scale, shift, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B, Cin, Cout, L, G, with_bias", [(2, 3, 8, 17, 4, True), (1, 5, 6, 33, 3, False)])
def test_conv_block_cuda_matches_reference(backend, poison_allocations, dtype, B, Cin, Cout, L, G, with_bias):
    """conv_block_cuda = torch's conv1d + the CUDA GN epilogue: forward and every gradient against conv_block_ref,
    from a non-contiguous x."""
    from flowfm_kernels.conv_block.reference import conv_block_ref

    gen = torch.Generator().manual_seed(Cin * 100 + L)
    x = non_contiguous(randn((B, Cin, L), dtype, backend.device, gen))
    weight = randn((Cout, Cin, 3), dtype, backend.device, gen, 0.4)
    bias = randn((Cout,), dtype, backend.device, gen, 0.2) if with_bias else None
    _, gamma, beta, scale, shift = _gn_inputs(B, Cout, 1, torch.float32, backend.device, gen)
    dy = randn((B, Cout, L), dtype, backend.device, gen)
    inputs = [x, weight, bias, gamma, beta, scale, shift]
    outs, grads = [], []
    for fn in (conv_block_cuda, conv_block_ref):
        leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in inputs]
        y = fn(*leaves, G)
        y.backward(dy)
        outs.append(y.detach())
        grads.append([None if t is None else t.grad for t in leaves])
    tol = max(REL_RMS_TOL[dtype], 1e-4)
    assert outs[0].dtype == dtype
    assert_rel_rms(outs[0], outs[1], REL_RMS_TOL[dtype], f"conv_block {dtype}")
    for name, got, want in zip(("dx", "dweight", "dbias", "dgamma", "dbeta", "dscale", "dshift"), *grads):
        if want is None:
            assert got is None, name
            continue
        assert got.dtype == want.dtype, name
        assert_rel_rms(got, want, tol, f"conv_block {name} {dtype}")


def test_conv_block_cuda_rejects_bad_shapes_and_devices():
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="weight \\(Cout, Cin, 3\\)"):
        conv_block_cuda(x, torch.randn(4, 3, 5), None, None, None, None, None, 2)
    with pytest.raises(ValueError, match="CUDA tensors"):
        conv_block_cuda(x, torch.randn(4, 3, 3), None, None, None, None, None, 2)
