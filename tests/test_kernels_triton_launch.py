"""Launch plumbing of the Triton conv / GroupNorm kernels that the interpreter alone would not exercise.

Grid shapes for batches beyond the 65,535 limit of CUDA grid axes 1 / 2, in-place ``out=h`` (autotuning re-runs a
kernel, so an aliased output must be restored between runs), config pruning (shared memory of sm_90, register
pressure), the batch bucket in the autotune keys, and the pinned config of deterministic mode. Pure-Python checks
of the launch helpers plus small interpreter runs against the eager reference.
"""

import pytest
import torch


pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels import triton_support as ts  # noqa: E402
from flowfm_kernels.conv_block import triton as ct  # noqa: E402
from flowfm_kernels.gn_film_silu import triton as gt  # noqa: E402
from flowfm_kernels.gn_film_silu.reference import gn_film_silu_ref  # noqa: E402
from tests.numerics import assert_rel_rms  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not dispatch.triton_interpreting():
    pytest.skip("no GPU and TRITON_INTERPRET=0: the triton kernels cannot run here", allow_module_level=True)

TUNED = {"conv": ct._conv1d_k3_kernel, "wgrad": ct._conv1d_k3_wgrad_kernel, "fused_fwd": gt._gn_fused_fwd_kernel,
         "stats": gt._gn_stats_kernel, "apply": gt._gn_apply_kernel, "fused_bwd": gt._gn_fused_bwd_kernel,
         "bwd_reduce": gt._gn_bwd_reduce_kernel, "bwd_dh": gt._gn_bwd_dh_kernel}


def _within_cuda_limits(grid):
    assert len(grid) == 3
    for n, limit in zip(grid, (2**31 - 1, 65535, 65535)):
        assert 1 <= n <= limit, grid


@pytest.mark.parametrize("B", [1, 65535, 65536, 100_000, 1_000_000])
def test_grids_stay_within_cuda_limits(B):
    """The batch of a fast_sample(n=100000) request lands on axis 0; axes 1 / 2 stay small."""
    L, C = 300, 256
    n_lt = ts.cdiv(L, 64)
    for block_co in (16, 32, 64, 128):
        grid = ct.conv_grid(B, n_lt, C)({"BLOCK_CO": block_co})
        _within_cuda_limits(grid)
        assert grid == (B * n_lt, ts.cdiv(C, block_co), 1)
    for block in (256, 512, 4096):
        grid = gt.row_grid(B, C * L)({"BLOCK": block})
        _within_cuda_limits(grid)
        assert grid[0] == B * ts.cdiv(C * L, block)
    for block_c in (8, 16, 32):
        _within_cuda_limits(gt.reduce_grid(B, 2, C)({"BLOCK_C": block_c}))
    _within_cuda_limits(ts.fold_grid(B, 8))


def test_fold_grid_rejects_what_cuda_cannot_launch():
    with pytest.raises(ValueError, match="axis 0"):
        ts.fold_grid(2**30, 4)
    with pytest.raises(ValueError, match="axis 1"):
        ts.fold_grid(1, 1, 70_000)
    with pytest.raises(ValueError):
        ts.fold_grid(0, 4)


def test_folded_batch_index_conv_and_gn():
    """Several samples x several l-tiles on axis 0 (b = pid0 // tiles): every sample gets its own result."""
    g = torch.Generator().manual_seed(3)
    B, Cin, Cout, L, G = 5, 6, 8, 37, 2
    x = torch.randn(B, Cin, L, generator=g).to(DEVICE)
    w = torch.randn(Cout, Cin, 3, generator=g).to(DEVICE)
    bias = torch.randn(Cout, generator=g).to(DEVICE)
    assert ts.cdiv(L, ct.conv_block_l(L)) > 1
    h, stats = ct.conv1d_k3_forward(x, w, bias, "ieee", with_stats=True)
    assert_rel_rms(h, F.conv1d(x, w, bias, padding=1), 1e-5, "conv h")
    mean, rstd = ct.merge_conv_stats(*stats, L, G)
    hg = h.view(B, G, -1)
    torch.testing.assert_close(mean, hg.mean(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rstd, torch.rsqrt(hg.var(-1, unbiased=False) + 1e-5), rtol=1e-4, atol=1e-5)
    dw, db = ct.conv1d_k3_wgrad(h, x, "ieee")
    xr = x.detach().requires_grad_()
    wr = w.detach().requires_grad_()
    br = bias.detach().requires_grad_()
    F.conv1d(xr, wr, br, padding=1).backward(h)
    assert_rel_rms(dw, wr.grad, 1e-5, "dW")
    assert_rel_rms(db, br.grad, 1e-5, "dbias")


@pytest.mark.parametrize("path", ["fused", "tiled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_in_place_out_equals_out_of_place(path, dtype, monkeypatch):
    if path == "tiled":
        monkeypatch.setattr(gt, "FUSED_MAX_ELEMS", 0)
    g = torch.Generator().manual_seed(4)
    B, C, L, G = 3, 8, 21, 4
    h = (torch.randn(B, C, L, generator=g) * 2 + 0.5).to(DEVICE, dtype)
    gamma = (1 + 0.3 * torch.randn(C, generator=g)).to(DEVICE, dtype)
    beta = torch.randn(C, generator=g).to(DEVICE, dtype)
    scale = (0.3 * torch.randn(B, C, generator=g)).to(DEVICE, dtype)
    shift = torch.randn(B, C, generator=g).to(DEVICE, dtype)
    y, mean, rstd = gt.gn_film_silu_forward(h, gamma, beta, scale, shift, G)
    h_in = h.clone()
    y_in, mean_in, rstd_in = gt.gn_film_silu_forward(h_in, gamma, beta, scale, shift, G, out=h_in)
    assert y_in.data_ptr() == h_in.data_ptr()
    torch.testing.assert_close(y_in, y, rtol=0, atol=0)
    torch.testing.assert_close(mean_in, mean, rtol=0, atol=0)
    torch.testing.assert_close(rstd_in, rstd, rtol=0, atol=0)
    ref = gn_film_silu_ref(h.float(), gamma.float(), beta.float(), scale.float(), shift.float(), G)
    assert_rel_rms(y_in.float(), ref, 1e-5 if dtype == torch.float32 else 1.6e-2, "in-place y")
    h_ap = h.clone()
    gt.gn_film_silu_apply(h_ap, mean, rstd, gamma, beta, scale, shift, G, out=h_ap)
    torch.testing.assert_close(h_ap, gt.gn_film_silu_apply(h, mean, rstd, gamma, beta, scale, shift, G),
                               rtol=0, atol=0)


def test_aliasable_outputs_are_restored_while_tuning():
    """The tuner times several configs on the first call per key; an output that may be h must be restored."""
    assert "y_ptr" in gt._gn_fused_fwd_kernel.restore_value
    assert "y_ptr" in gt._gn_apply_kernel.restore_value


def test_conv_forward_prunes_configs_beyond_sm90_shared_memory():
    block_l = 64
    sizes = {(c.kwargs["BLOCK_CO"], c.kwargs["BLOCK_CI"], c.num_stages): ct.conv_smem_bytes(c, block_l, 4)
             for c in ct._CONV_GPU_CONFIGS}
    # the two configs the offline sm_90 compile reports at 288 and 432 KB (bench/results/triton_offline_sm90.json)
    assert sizes[(64, 64, 3)] == 294912 and sizes[(128, 64, 3)] == 442368
    fp32 = {"x_ptr": torch.empty(1, dtype=torch.float32), "TUNE_KEY": ts.tune_key(64, pinned=False)}
    bf16 = {"x_ptr": torch.empty(1, dtype=torch.bfloat16), "TUNE_KEY": ts.tune_key(64, pinned=False)}
    kept32 = ts.select_configs(ct._CONV_GPU_CONFIGS, fp32, {"BLOCK_L": block_l}, ct._conv_fits)
    kept16 = ts.select_configs(ct._CONV_GPU_CONFIGS, bf16, {"BLOCK_L": block_l}, ct._conv_fits)
    assert all(ct.conv_smem_bytes(c, block_l, 4) <= ts.SMEM_LIMIT_BYTES for c in kept32)
    assert len(kept32) == len(ct._CONV_GPU_CONFIGS) - 2
    assert len(kept16) == len(ct._CONV_GPU_CONFIGS)
    kept_w = ts.select_configs(ct._WGRAD_GPU_CONFIGS, fp32, {}, ct._wgrad_fits)
    assert kept_w == [c for c in ct._WGRAD_GPU_CONFIGS if ct.wgrad_smem_bytes(c, 4) <= ts.SMEM_LIMIT_BYTES]


def test_fused_backward_prunes_four_warps_above_4096_elements():
    configs = [gt._cfg(8), gt._cfg(4), gt._cfg(16)]
    args = {"TUNE_KEY": ts.tune_key(8, pinned=False)}
    big = ts.select_configs(configs, args, {"BLOCK_C": 16, "BLOCK_L": 512}, gt._fused_bwd_fits)
    small = ts.select_configs(configs, args, {"BLOCK_C": 8, "BLOCK_L": 512}, gt._fused_bwd_fits)
    assert sorted(c.num_warps for c in big) == [8, 16]
    assert sorted(c.num_warps for c in small) == [4, 8, 16]


def test_fused_forward_prunes_four_warps_above_4096_elements():
    configs = [gt._cfg(8), gt._cfg(4), gt._cfg(16)]
    args = {"TUNE_KEY": ts.tune_key(8, pinned=False)}
    assert sorted(c.num_warps for c in ts.select_configs(configs, args, {"BLOCK": 8192}, gt._fused_fwd_fits)) == [8, 16]
    assert len(ts.select_configs(configs, args, {"BLOCK": 4096}, gt._fused_fwd_fits)) == 3


def test_select_configs_keeps_one_when_none_fits():
    configs = [gt._cfg(4, BLOCK=4096), gt._cfg(8, BLOCK=8192)]
    assert ts.select_configs(configs, {"TUNE_KEY": 2}, {}, lambda c, a, m: False) == configs[:1]


def test_autotune_keys_include_the_batch_bucket():
    for name, kernel in TUNED.items():
        assert "TUNE_KEY" in kernel.keys, name
    assert ts.tune_key(1, pinned=False) != ts.tune_key(1024, pinned=False)
    assert ts.tune_key(600, pinned=False) == ts.tune_key(1000, pinned=False)  # one power-of-two bucket
    assert ts.tune_key(1024, pinned=False) != ts.tune_key(1023, pinned=False)
    assert min(ts.tune_key(b, p) for b in (0, 1, 2) for p in (False, True)) >= 2  # never Triton's special 1


def test_deterministic_mode_pins_the_first_config(monkeypatch):
    monkeypatch.delenv("FLOWFM_DETERMINISTIC", raising=False)
    assert not ts.deterministic_requested()
    monkeypatch.setenv("FLOWFM_DETERMINISTIC", "1")
    assert ts.deterministic_requested() and ts.tune_key(64) % 2 == 1
    monkeypatch.setenv("FLOWFM_DETERMINISTIC", "0")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert ts.deterministic_requested() and ts.tune_key(64) % 2 == 1
    finally:
        torch.use_deterministic_algorithms(previous)
    fp32 = {"x_ptr": torch.empty(1, dtype=torch.float32)}
    picks = [ts.select_configs(ct._CONV_GPU_CONFIGS, {**fp32, "TUNE_KEY": ts.tune_key(b, pinned=True)},
                               {"BLOCK_L": 64}, ct._conv_fits) for b in (1, 64, 64, 1024)]
    assert all(p == [ct._CONV_GPU_CONFIGS[0]] for p in picks)
    timed = ts.select_configs(ct._CONV_GPU_CONFIGS, {**fp32, "TUNE_KEY": ts.tune_key(64, pinned=False)},
                              {"BLOCK_L": 64}, ct._conv_fits)
    assert len(timed) > 1


def test_weight_view_with_contiguous_input_channels():
    w = torch.randn(5, 7, 3)
    wk = ct._ci_contiguous(w)
    assert wk.stride(1) == 1 and torch.equal(wk, w)
    assert ct._ci_contiguous(wk) is wk
    wt = ct._transposed_weight(w)  # W'[ci, co, k] = W[co, ci, 2 - k], already in the kernel's layout
    assert torch.equal(wt, w.transpose(0, 1).flip(-1)) and ct._ci_contiguous(wt) is wt


def test_alignment_hints():
    assert ts.hint_divisor(300, 300 * 64, 300) == 4
    assert ts.hint_divisor(150, 150 * 64) == 2
    assert ts.hint_divisor(75) == 1
    assert ts.hint_divisor(0, 256) == 16
    h = torch.empty(2, 16, 300)
    assert gt._tile_vec(300, h) == 4
    assert gt._tile_vec(300, h.transpose(1, 2).contiguous().transpose(1, 2)) == 1
    assert gt._span_layout(2, 75, h[:, :, :75].contiguous())[1] == 2  # span 150 elements


def test_offline_tool_parses_ptx_access_widths():
    """bench/triton_offline.py (run offline, without the interpreter) classifies global accesses by bytes."""
    from bench import triton_offline as to
    ptx = ("\tld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];\n"
           "\t@%p1 ld.global.b16 { %rs1 }, [ %rd2 + 0 ];\n"
           "\tld.global.L1::evict_last.v2.b32 { %r5, %r6 }, [ %rd3 + 0 ];\n"
           "\tst.global.v4.b32 [ %rd4 + 0 ], { %r1, %r2, %r3, %r4 };\n"
           "\tcp.async.cg.shared.global [ %r7 + 0 ], [ %rd5 + 0 ], 0x10, %r8;\n"
           "\tcp.async.ca.shared.global [ %r9 + 0 ], [ %rd6 + 0 ], 0x4, %r8;\n")
    widths = to._access_widths(ptx)
    assert widths == {"load": {"2": 1, "8": 1, "16": 1}, "store": {"16": 1}, "cp_async": {"4": 1, "16": 1}}
    row = dict(shape="B4 C64->64 L300 G8 float32", kernel="conv_block._k", kept_by_prune=False, registers=255,
               spill_store_bytes=8, spill_load_bytes=4, smem_over_limit=True, access_bytes=widths)
    kept = dict(row, kept_by_prune=True, registers=100, spill_store_bytes=0, spill_load_bytes=0,
                smem_over_limit=False)
    (s,) = to.summary({"rows": [row, kept]})
    assert (s["dtype"], s["configs"], s["kept"], s["max_regs_kept"]) == ("float32", 2, 1, 100)
    assert (s["max_spill_kept"], s["max_spill_all"], s["over_smem"], s["over_smem_kept"]) == (0, 12, 1, 0)
