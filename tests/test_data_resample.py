"""Resampling (polyphase, anti-aliased), label resampling and windowing, against analytic / brute-force references."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from flowfm.data import UNLABELLED, make_windows, resample_labels, resample_to
from flowfm.data.resample import rate_ratio


# ---------------------------------------------------------------------------------------------- resample_to
def test_sine_below_nyquist_keeps_amplitude_phase_and_frequency():
    fs_in, fs_out, f0, amp, dc, phase = 50.0, 30.0, 2.0, 0.7, 1.0, 0.3
    t_in = np.arange(0, 20, 1 / fs_in)
    x = dc + amp * np.sin(2 * np.pi * f0 * t_in + phase)
    y = resample_to(x, fs_in, fs_out)
    t_out = np.arange(len(y)) / fs_out
    analytic = dc + amp * np.sin(2 * np.pi * f0 * t_out + phase)
    inner = slice(int(fs_out), -int(fs_out))  # 1 s away from the edges
    assert np.abs(y[inner] - analytic[inner]).max() < 5e-3
    assert np.abs(y - analytic).max() < 0.05  # edges too (line padding: no gravity ringing)
    # dominant frequency of the resampled signal is still f0
    spec = np.abs(np.fft.rfft(y[inner] - y[inner].mean()))
    freqs = np.fft.rfftfreq(len(y[inner]), 1 / fs_out)
    assert abs(freqs[spec.argmax()] - f0) < 0.1


def test_tone_above_new_nyquist_is_attenuated_where_linear_interpolation_aliases():
    fs_in, fs_out = 50.0, 30.0
    t_in = np.arange(0, 20, 1 / fs_in)
    x = np.sin(2 * np.pi * 20.0 * t_in)  # 20 Hz > 15 Hz (new Nyquist)
    y = resample_to(x, fs_in, fs_out)
    t_out = np.arange(len(y)) / fs_out
    linear = np.interp(t_out, t_in, x)
    inner = slice(30, -30)
    rms = lambda a: float(np.sqrt(np.mean(a[inner] ** 2)))  # noqa: E731
    assert rms(linear) > 0.25  # linear interpolation folds 20 Hz to 10 Hz
    assert rms(y) < 0.01 * rms(x)  # the polyphase filter removes it


@pytest.mark.parametrize("fs_in,t_in", [(100.0, 1000), (100.0, 1001), (20.0, 200), (20.0, 201), (32.0, 320),
                                        (32.0, 333), (50.0, 20598)])
def test_output_length(fs_in, t_in):
    x = np.random.default_rng(0).standard_normal((t_in, 3))
    y = resample_to(x, fs_in, 30.0)
    assert y.shape == (math.ceil(t_in * 30.0 / fs_in), 3)


def test_rate_ratio_and_dtype_and_axis():
    assert rate_ratio(50, 30) == (3, 5)
    assert rate_ratio(100, 30) == (3, 10)
    assert rate_ratio(20, 30) == (3, 2)
    assert rate_ratio(32, 30) == (15, 16)
    x = np.random.default_rng(1).standard_normal((3, 500)).astype(np.float32)
    y = resample_to(x, 50, 30, axis=1)
    assert y.dtype == np.float32 and y.shape == (3, 300)
    np.testing.assert_allclose(y, resample_to(x.T, 50, 30, axis=0).T, rtol=0, atol=1e-6)
    assert resample_to(x.astype(np.float64), 30, 30).dtype == np.float64
    with pytest.raises(ValueError, match="positive"):
        resample_to(x, 0, 30)


# ------------------------------------------------------------------------------------------ resample_labels
@pytest.mark.parametrize("fs_in,fs_out", [(50, 30), (100, 30), (20, 30), (32, 30)])
def test_resample_labels_nearest_sample(fs_in, fs_out):
    t_in = 997
    labels = np.arange(t_in)
    n_out = math.ceil(t_in * fs_out / fs_in)
    out = resample_labels(labels, fs_in, fs_out, n_out)
    j = np.arange(n_out)
    expected = np.minimum(np.floor(j * fs_in / fs_out + 0.5).astype(int), t_in - 1)
    np.testing.assert_array_equal(out, expected)


def test_labels_stay_aligned_with_the_resampled_signal():
    fs_in, fs_out = 50.0, 30.0
    t = np.arange(0, 10, 1 / fs_in)
    step = (t >= 5.0).astype(float)  # signal and label both switch at t = 5 s
    y = resample_to(step, fs_in, fs_out, padtype="edge")
    lab = resample_labels((t >= 5.0).astype(int), fs_in, fs_out, len(y))
    first_label = int(np.argmax(lab == 1))
    first_half = int(np.argmax(y > 0.5))
    assert first_label == 150 and abs(first_half - first_label) <= 1


# --------------------------------------------------------------------------------------------- make_windows
@pytest.mark.parametrize("t,n_expected", [(1800, 11), (1799, 10), (300, 1), (449, 1), (450, 2), (299, 0)])
def test_window_count(t, n_expected):
    x, y = make_windows(np.zeros((t, 3)), 30.0)
    assert x.shape == (n_expected, 3, 300) and y is None
    assert x.dtype == np.float32 and x.flags.c_contiguous


def test_window_content_and_hop():
    t, c = 1000, 3
    sig = np.arange(t * c, dtype=np.float64).reshape(t, c)
    x, _ = make_windows(sig, 30.0, window_s=10.0, hop_s=5.0)
    assert x.shape == ((t - 300) // 150 + 1, c, 300)
    for n in range(len(x)):
        np.testing.assert_array_equal(x[n], sig[n * 150:n * 150 + 300].T)
    x2, _ = make_windows(sig, 50.0, window_s=2.0, hop_s=0.5)  # L=100, hop=25
    assert x2.shape == ((t - 100) // 25 + 1, c, 100)
    np.testing.assert_array_equal(x2[3], sig[75:175].T)


@pytest.mark.parametrize("n_major,expected", [(237, UNLABELLED), (240, 4), (243, 4), (300, 4)])
def test_80_percent_rule_at_the_boundary(n_major, expected):
    labels = np.array([4] * n_major + [2] * (300 - n_major))  # 79 %, 80 %, 81 %, 100 %
    _, y = make_windows(np.zeros((300, 3)), 30.0, labels)
    assert y.tolist() == [expected]
    _, y_mixed = make_windows(np.zeros((300, 3)), 30.0, np.roll(labels, 100))  # position does not matter
    assert y_mixed.tolist() == [expected]


def test_labels_follow_the_hop():
    labels = np.repeat(np.arange(6), 300)  # a new activity every 10 s
    _, y = make_windows(np.zeros((1800, 3)), 30.0, labels)
    # window 2k covers block k entirely; window 2k+1 straddles two blocks 50/50
    assert y.tolist() == [0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5]


def test_valid_labels_and_string_labels():
    sig = np.zeros((600, 3))
    lab = np.array([7] * 300 + [1] * 300)  # a transition, then walking
    _, y = make_windows(sig, 30.0, lab, hop_s=10.0)
    assert y.tolist() == [7, 1]
    _, y = make_windows(sig, 30.0, lab, hop_s=10.0, valid_labels=range(1, 7))
    assert y.tolist() == [UNLABELLED, 1]
    s = np.array(["walk"] * 300 + ["sit"] * 150 + ["walk"] * 150)
    _, ys = make_windows(sig, 30.0, s, hop_s=10.0)
    assert ys.tolist() == ["walk", ""]  # "" marks an unlabelled window for str labels


def test_labels_match_a_brute_force_reference():
    rng = np.random.default_rng(3)
    runs = rng.integers(20, 400, size=80)
    labels = np.repeat(rng.choice([-1, 1, 2, 3, 7, 8], size=len(runs)), runs)
    t = len(labels)
    x, y = make_windows(rng.standard_normal((t, 3)), 30.0, labels, valid_labels={1, 2, 3})
    ref = []
    for n in range((t - 300) // 150 + 1):
        (lab, cnt), = Counter(labels[n * 150:n * 150 + 300].tolist()).most_common(1)
        ref.append(lab if cnt >= 240 and lab in {1, 2, 3} else UNLABELLED)
    assert y.tolist() == ref
    assert len(set(ref)) > 2  # the reference exercises several outcomes


def test_make_windows_errors():
    with pytest.raises(ValueError, match=r"shape \(T, C\)"):
        make_windows(np.zeros(900), 30.0)
    with pytest.raises(ValueError, match="to match the signal"):
        make_windows(np.zeros((900, 3)), 30.0, np.zeros(899, dtype=int))
