"""Launch plans of the CUDA C++ kernels: grids within CUDA's limits for huge batches; where they can run, that
flowfm_kernels._C and its CuPy JIT twin expose the same API and plans, and that the JIT sources compile with NVRTC.
"""
from __future__ import annotations

import pytest

from flowfm_kernels.cuda import _build, _cupy_jit
from tests.cuda_emulation import EmuCupy, EmuKernels


def _ext_importable() -> bool:
    try:
        import flowfm_kernels._C  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def test_gn_plan_properties():
    small = _cupy_jit.gn_fwd_plan(8, 64, 300, 8, 132)
    assert small["fused"] and small["cache"] and small["workspace_bytes"] == 0
    assert small["smem_bytes"] <= _cupy_jit.SMEM_BUDGET_BYTES
    big = _cupy_jit.gn_fwd_plan(1, 64, 100_000, 1, 132)
    assert not big["fused"] and big["workspace_bytes"] == big["chunks"] * 12 and big["chunks"] > 1
    for B, C, L, G, sms in [(1, 4, 5000, 1, 2), (3, 6, 17, 3, 132), (2, 64, 299, 32, 4), (1, 3, 7001, 1, 2),
                            (256, 256, 75, 32, 132), (1, 8192, 2, 1, 8)]:
        p = _cupy_jit.gn_fwd_plan(B, C, L, G, sms)
        N = C // G * L
        assert p["chunk_elems"] % 4 == 0
        assert p["chunks"] * p["chunk_elems"] >= N > (p["chunks"] - 1) * p["chunk_elems"]
        if p["fused"]:
            assert p["smem_bytes"] <= _cupy_jit.SMEM_BUDGET_BYTES
    assert _cupy_jit.fm_loss_chunks(1) == 1 and _cupy_jit.fm_loss_chunks(4097) == 2


def _record_launches(call, sms: int = 132) -> list:
    """Runs ``call(module)`` on a JIT kernels module whose launches are only recorded (and checked against CUDA's
    grid limits by tests/cuda_emulation.py); returns the launches."""
    fake = EmuCupy(None, sms)
    call(EmuKernels(_cupy_jit.find_source_dir(), cupy_module=fake))
    return fake.launches


@pytest.mark.parametrize("sms", [1, 132])
def test_launch_geometry_stays_within_cuda_limits_for_huge_batches(sms):
    """Every launcher at batches far beyond 65,535 (grid y / z limit): the geometry check in EmuKernel fails the
    test if any launch puts more than 65,535 blocks on y or z. Pointers are fake (nothing runs)."""
    P = 1 << 20  # a fake, suitably aligned device address

    def gn(B, C, L, G):
        def call(m):
            ws = m.gn_fwd_workspace_bytes(B, C, L, G)
            m.gn_film_silu_fwd(P, P, P, P, P, P, P, P, P if ws else 0, ws, B, C, L, G, 1e-5, 0, 0)
            m.gn_film_silu_bwd(P, P, P, P, P, P, P, P, P, P, P, P, P, P, m.gn_bwd_workspace_bytes(B, C), B, C, L, G,
                               0, 0)
        return call

    def steps(B, N):
        def call(m):
            m.fm_loss_fwd(P, P, P, P, P, P, m.fm_loss_workspace_bytes(B, N), B, N, 0.0, 0, 0, 0, 0)
            m.interpolate(P, P, P, P, B, N, 0.0, 0, 0)
            m.euler_step(P, P, P, P, P, B, N, 2.0, 0, 0, 0)
            m.heun_correct(P, P, P, P, P, P, P, B, N, 2.0, 0, 0, 0)
            m.rk4_combine(P, P, P, P, P, P, P, B, N, 0, 0, 0)
            m.guidance_combine(P, P, P, B * N, 2.0, 0, 0)
        return call

    cases = [gn(100_000, 8, 4, 2), gn(70_001, 3, 5, 1), gn(1, 4, 1 << 22, 1), steps(200_000, 3 * 300),
             steps(70_000, 7), steps(3, 1 << 24)]
    for call in cases:
        launches = _record_launches(call, sms)
        assert launches
        for la in launches:  # the y-capped kernels grid-stride over the remaining samples
            assert la.grid[2] == 1
    # dgamma / dbeta: the batch is spread over blocks (32 rows each), not looped over by one block
    launches = _record_launches(gn(1024, 256, 75, 32), sms)
    partial = [la for la in launches if la.name == "flowfm::gn_bwd_params_partial_kernel"]
    assert len(partial) == 1 and partial[0].grid[0] == (1024 // 32) * (256 // 32)


@pytest.mark.skipif(not _ext_importable(), reason="flowfm_kernels._C is not built here")
def test_ext_and_jit_expose_the_same_api_and_plans():
    import flowfm_kernels._C as ext

    ext_fns = {n for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))}
    jit_fns = {n for n in dir(_cupy_jit.JitKernels) if not n.startswith("_")
               and callable(getattr(_cupy_jit.JitKernels, n))} - {"compile"}
    assert ext_fns == jit_fns
    for shape in [(1, 64, 100000, 1), (4, 64, 300, 8), (256, 256, 75, 32), (3, 6, 17, 3), (2, 8192, 2, 1),
                  (1, 4, 5000, 1), (1, 3, 4999, 1)]:
        for sms in (1, 2, 66, 132):
            assert ext.gn_fwd_plan(*shape, sms) == _cupy_jit.gn_fwd_plan(*shape, sms), (shape, sms)
    for B, N in [(1, 1), (3, 900), (2, 4097), (7, 100_000)]:
        assert ext.fm_loss_workspace_bytes(B, N) == _cupy_jit.fm_loss_workspace_bytes(B, N)
    for B, C in [(1, 1), (31, 7), (32, 64), (33, 64), (1024, 256), (70_000, 3)]:
        assert ext.gn_bwd_workspace_bytes(B, C) == _cupy_jit.gn_bwd_workspace_bytes(B, C), (B, C)
    with pytest.raises(ValueError, match="null pointer"):
        ext.euler_step(0, 0, 0, 0, 0, 1, 1, 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="dtype code"):
        ext.guidance_combine(16, 16, 16, 4, 1.0, 7, 0)


def _libnvrtc():
    try:
        from flowfm_kernels.cuda._nvrtc_check import find_libnvrtc

        return find_libnvrtc()
    except Exception:  # noqa: BLE001
        return None


@pytest.mark.slow
@pytest.mark.skipif(_libnvrtc() is None or _build.find_cuda_root() is None,
                    reason="libnvrtc or the CUDA headers not found")
def test_jit_sources_compile_with_nvrtc():
    from flowfm_kernels.cuda._nvrtc_check import compile_sources

    lowered = compile_sources("sm_90")
    assert set(lowered) == set(_cupy_jit.name_expressions())
