"""Time-shifted encoder view: neighbour detection, cuts against slices of the recordings, the trainer's use."""
import numpy as np
import pytest
import torch

import flowfm
from flowfm.config import FlowFMConfig
from flowfm.data import time_shift
from flowfm.data.time_shift import TimeShiftedCuts, find_neighbours, shifted_cuts
from flowfm.training import TrainConfig, pretrain
from flowfm.views import augment_view, encoder_view

L, HOP = 40, 20


def _recordings(lengths=(140, 100, 181), channels=3, seed=0):
    """Random recordings (T, C) and their windows (L, hop) in recording order, with (recording, start) of each."""
    rng = np.random.default_rng(seed)
    recs = [rng.standard_normal((t, channels)).astype(np.float32) for t in lengths]
    windows, origin = [], []
    for r, rec in enumerate(recs):
        for start in range(0, len(rec) - L + 1, HOP):
            windows.append(rec[start:start + L].T)
            origin.append((r, start))
    return recs, np.stack(windows), origin


def _reference_cut(recs, origin, i, shift):
    """Window i re-cut ``shift`` samples later, a direct slice of the recording; a window without a neighbouring
    window on one side (the first / last of its recording) does not move to that side, and no cut moves by > hop."""
    r, start = origin[i]
    lo = -HOP if start >= HOP else 0
    hi = HOP if start + HOP + L <= len(recs[r]) else 0
    begin = start + int(np.clip(shift, lo, hi))
    return recs[r][begin:begin + L].T


def test_neighbours_link_consecutive_windows_of_a_recording_only():
    recs, x, origin = _recordings()
    pred, succ = find_neighbours(x, HOP)
    for i in range(len(x)):
        same_next = i + 1 < len(x) and origin[i + 1][0] == origin[i][0]
        assert succ[i] == (i + 1 if same_next else -1), i
        same_prev = i > 0 and origin[i - 1][0] == origin[i][0]
        assert pred[i] == (i - 1 if same_prev else -1), i


def test_neighbours_are_found_across_read_chunks_and_on_a_channels_last_view(monkeypatch):
    _, x, _ = _recordings()
    expected = find_neighbours(x, HOP)
    monkeypatch.setattr(time_shift, "_CHUNK", 3)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 1))
    for arr in (x, channels_last.transpose(0, 2, 1)):      # the second is non-contiguous
        got = find_neighbours(arr, HOP)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_subject_ids_cut_links_that_the_data_alone_would_make():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((100, 3)).astype(np.float32)
    x = np.stack([signal[s:s + L].T for s in (0, 20, 40)])
    assert list(find_neighbours(x, HOP)[1]) == [1, 2, -1]
    assert list(find_neighbours(x, HOP, pid=np.array([7, 7, 8]))[1]) == [1, -1, -1]


@pytest.mark.parametrize("shift", [-20, -13, -1, 0, 1, 7, 20, 35, -60])
def test_shifted_cuts_equal_slices_of_the_recording(shift):
    recs, x, origin = _recordings()
    pred, succ = find_neighbours(x, HOP)
    idx = np.arange(len(x))
    cuts = shifted_cuts(x, idx, np.full(len(x), shift), pred, succ, HOP)
    assert cuts.shape == x.shape and cuts.dtype == np.float32
    for i in idx:
        np.testing.assert_array_equal(cuts[i], _reference_cut(recs, origin, i, shift), err_msg=f"window {i}")


def test_cuts_by_mixed_shifts_of_shuffled_rows():
    recs, x, origin = _recordings(seed=3)
    pred, succ = find_neighbours(x, HOP)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))[:9]
    shifts = rng.integers(-HOP, HOP + 1, size=9)
    cuts = shifted_cuts(x, idx, shifts, pred, succ, HOP)
    for k, (i, s) in enumerate(zip(idx, shifts)):
        np.testing.assert_array_equal(cuts[k], _reference_cut(recs, origin, i, s))


def test_cutter_draws_bounded_reproducible_shifts_and_refuses_unordered_windows():
    recs, x, origin = _recordings()
    cutter = TimeShiftedCuts(x, max_shift=7, hop=HOP)
    idx = np.arange(len(x))
    a = cutter.draw(idx, np.random.default_rng(4))
    assert np.array_equal(a, cutter.draw(idx, np.random.default_rng(4)))
    for i in idx:   # every cut is the recording re-cut by at most 7 samples
        r, start = origin[i]
        offsets = [s for s in range(-7, 8) if 0 <= start + s <= len(recs[r]) - L
                   and np.array_equal(a[i], recs[r][start + s:start + s + L].T)]
        assert offsets, i
    assert not np.array_equal(a, x)
    with pytest.raises(ValueError, match="no consecutive windows overlapping"):
        TimeShiftedCuts(x[::-1], max_shift=5, hop=HOP)   # reversed time order: nothing continues anything
    with pytest.raises(ValueError, match="hop"):
        find_neighbours(x, L)


def test_shift_views_need_the_cuts_and_augment_them():
    x = torch.randn(4, 3, L)
    with pytest.raises(ValueError, match="needs the time-shifted cut"):
        encoder_view(x, FlowFMConfig(preset="tiny", encoder_view="shift"))
    with pytest.raises(ValueError, match="batch's shape"):
        encoder_view(x, FlowFMConfig(preset="tiny", encoder_view="shift"), shifted=x[:2])
    shifted = torch.randn(4, 3, L)
    assert torch.equal(encoder_view(x, FlowFMConfig(preset="tiny", encoder_view="shift"), shifted=shifted), shifted)
    augmented = encoder_view(x, FlowFMConfig(preset="tiny", encoder_view="shift+augment"),
                             torch.Generator().manual_seed(0), shifted=shifted)
    cfg = FlowFMConfig(preset="tiny")
    expected = augment_view(shifted, cfg.view_scale, cfg.view_jitter_g, cfg.view_max_rotation_deg,
                            cfg.view_warp_sigma, cfg.view_warp_knots, torch.Generator().manual_seed(0))
    assert not torch.equal(augmented, shifted) and torch.equal(augmented, expected)  # the cut is augmented, not x
    with pytest.raises(ValueError, match="view_max_shift"):
        FlowFMConfig(preset="tiny", view_max_shift=0)
    with pytest.raises(ValueError, match="shift\\+augment"):
        FlowFMConfig(preset="tiny", encoder_view="rotate")


@pytest.mark.parametrize("method", ["flowfm", "diffusion"])
def test_pretraining_feeds_the_encoder_the_shifted_cuts(tmp_path, method, monkeypatch):
    from flowfm.baselines import build_model

    recs, x, origin = _recordings(lengths=(400, 333), seed=5)
    torch.manual_seed(0)
    model = build_model(method, dict(preset="tiny", window=L, encoder_view="shift", view_max_shift=HOP))
    model.fit_normalizer(x)
    drawn, seen = [], []
    original_draw, original_condition = TimeShiftedCuts.draw, type(model).training_condition
    monkeypatch.setattr(TimeShiftedCuts, "draw",
                        lambda self, idx, rng, *a, **k: drawn.append(original_draw(self, idx, rng, *a, **k))
                        or drawn[-1])
    monkeypatch.setattr(type(model), "training_condition",
                        lambda self, view, drop: seen.append(view.clone()) or original_condition(self, view, drop))
    history = pretrain(model, x, TrainConfig(epochs=1, batch_size=8, warmup_steps=1, seed=2, null_fit_steps=0),
                       tmp_path, progress=False)  # null_fit_steps=0: only the training steps call the spy
    assert np.isfinite(history[0]["loss"]) and len(seen) == len(drawn) == len(x) // 8
    for cuts, view in zip(drawn, seen):
        assert torch.equal(view, torch.from_numpy(cuts))
    assert any(not any(np.array_equal(row, w) for w in x) for c in drawn for row in c)  # cuts between windows


def test_data_parallel_ranks_get_their_rows_of_the_single_process_cuts():
    from flowfm.training.distributed import DistContext
    from flowfm.training.trainer import _batches, epoch_order

    _, x, _ = _recordings(lengths=(300, 260), seed=7)
    cutter = TimeShiftedCuts(x, max_shift=HOP, hop=HOP)
    order = epoch_order(len(x), 3, 1)
    single = list(_batches(x, order, 8, "cpu", DistContext(), cutter, seed=3, epoch=1))
    ranks = [list(_batches(x, order, 8, "cpu", DistContext(rank=r, world_size=2), cutter, seed=3, epoch=1))
             for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) > 1
    for whole, part0, part1 in zip(single, *ranks):
        assert torch.equal(torch.cat([part0[1], part1[1]]), whole[1])   # shifted cuts
        assert torch.equal(torch.cat([part0[0], part1[0]]), whole[0])   # the windows themselves
        assert not torch.equal(whole[1], whole[0])
