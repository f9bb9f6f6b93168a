"""Generation-quality metrics (docs/design.md §5) on data with known answers: hand-crafted features, feature Frechet
distance, discriminative score, TSTR/TRTR macro-F1, reconstruction correlation and the bundled report."""
import numpy as np
import pytest

import flowfm.evaluation.generation as generation
from flowfm.evaluation import (FEATURE_NAMES, discriminative_score, feature_frechet_distance, frechet_distance,
                               generation_report, reconstruction_correlation, trtr_macro_f1, tstr_macro_f1,
                               window_features)
from flowfm.evaluation.generation_features import feature_names

FS, L = 30.0, 300
T = np.arange(L) / FS
N = 200
F = len(FEATURE_NAMES)


def sinusoids(n, seed, freq_mul=1.0, offset=0.0, noise=0.05):
    """Random sinusoids + noise around gravity on z: freq U(0.8, 1.8) Hz shared by the axes, random phase and
    amplitude per axis, orientation jitter 0.1 g, white noise ``noise`` g."""
    r = np.random.default_rng(seed)
    f = r.uniform(0.8, 1.8, (n, 1, 1)) * freq_mul
    phase, amp = r.uniform(0, 2 * np.pi, (n, 3, 1)), r.uniform(0.1, 0.6, (n, 3, 1))
    gravity = np.array([0.0, 0.0, 1.0])[None, :, None] + r.normal(0, 0.1, (n, 3, 1))
    x = gravity + offset + amp * np.sin(2 * np.pi * f * T + phase) + noise * r.standard_normal((n, 3, L))
    return x.astype(np.float32)


def labelled(n, seed):
    """4 activities = 4 frequencies (1, 2, 3.5, 5 Hz, +-10 %), random amplitude/phase, noise 0.1 g."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 4, n)
    f = np.array([1.0, 2.0, 3.5, 5.0])[y][:, None, None] * r.uniform(0.9, 1.1, (n, 1, 1))
    x = (np.array([0.0, 0.0, 1.0])[None, :, None] + r.uniform(0.1, 0.5, (n, 3, 1))
         * np.sin(2 * np.pi * f * T + r.uniform(0, 2 * np.pi, (n, 3, 1))) + 0.1 * r.standard_normal((n, 3, L)))
    return x.astype(np.float32), y


SHIFTS = {"freq_x2": dict(freq_mul=2.0), "offset_0.5g": dict(offset=0.5), "noise_x5": dict(noise=0.25)}


@pytest.fixture(scope="module")
def sets():
    real, other = sinusoids(N, 1), sinusoids(N, 2)
    shifted = {k: sinusoids(N, 3, **kw) for k, kw in SHIFTS.items()}
    feats = {"real": window_features(real), "other": window_features(other),
             **{k: window_features(v) for k, v in shifted.items()}}
    return real, other, shifted, feats


def col(feats, name):
    return feats[:, FEATURE_NAMES.index(name)]


# ----------------------------------------------------------------------------------------------------- features
def test_feature_names_shape_dtype_determinism(sets):
    real, _, _, feats = sets
    assert F == 4 * 17 + 3 == 71 and len(set(FEATURE_NAMES)) == F
    assert feats["real"].shape == (N, F) and feats["real"].dtype == np.float64
    assert np.array_equal(window_features(real), feats["real"])
    assert np.array_equal(window_features(real[:7]), feats["real"][:7])  # per-window, batch independent
    assert len(feature_names(2)) == window_features(np.zeros((2, 2, L))).shape[1] == 3 * 17 + 1


def test_pure_sine_features():
    x = np.zeros((1, 3, L))
    x[0, 0] = np.sin(2 * np.pi * 2.0 * T)   # 2 Hz, 20 periods
    x[0, 2] = 1.0                          # gravity on z
    f = window_features(x)
    assert col(f, "x_dom_freq")[0] == pytest.approx(2.0)
    bands = [col(f, f"x_band_{b}Hz")[0] for b in ("0_1", "1_3", "3_5", "5_8", "8_15")]
    assert bands[1] > 0.99 and sum(bands) == pytest.approx(1.0)
    assert col(f, "x_mean")[0] == pytest.approx(0.0, abs=1e-12)
    assert col(f, "x_std")[0] == pytest.approx(np.sqrt(0.5))
    assert col(f, "x_skew")[0] == pytest.approx(0.0, abs=1e-9)
    assert col(f, "x_kurt")[0] == pytest.approx(-1.5)            # excess kurtosis of a sine
    # period 0.5 s: the biased autocorrelation at a whole number of periods k is (L - k) / L
    assert col(f, "x_acf_0.5s")[0] == pytest.approx(1 - 15 / L)
    assert col(f, "x_acf_1s")[0] == pytest.approx(1 - 30 / L)
    # 15 samples a period miss the crest: max = sin(2 pi 4 / 15)
    assert col(f, "x_max")[0] == pytest.approx(np.sin(2 * np.pi * 4 / 15)) == -col(f, "x_min")[0]


def test_constant_window_magnitude_and_finite():
    x = np.zeros((3, 3, L))
    x[0, 2] = 1.0                                  # [0, 0, 1] g
    x[1] = np.array([0.3, -0.4, 0.0])[:, None]     # |a| = 0.5
    f = window_features(x)                         # window 2 is all zeros
    assert np.isfinite(f).all()
    assert col(f, "mag_mean")[0] == pytest.approx(1.0) and col(f, "mag_mean")[1] == pytest.approx(0.5)
    assert col(f, "z_p50")[0] == 1.0 and col(f, "x_p90")[1] == pytest.approx(0.3)
    for name in ("mag_std", "z_skew", "z_kurt", "mag_dom_freq", "mag_band_0_1Hz", "z_acf_1s", "corr_xz"):
        assert np.all(col(f, name) == 0.0), name


def test_identical_axes_correlate_perfectly():
    s = np.random.default_rng(0).standard_normal((4, 1, L))
    f = window_features(np.repeat(s, 3, axis=1))
    for pair in ("xy", "xz", "yz"):
        assert np.allclose(col(f, f"corr_{pair}"), 1.0)
    f = window_features(np.concatenate([s, -s, 2 * s + 1], axis=1))
    assert np.allclose(col(f, "corr_xy"), -1.0) and np.allclose(col(f, "corr_xz"), 1.0)


def test_features_reject_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        window_features(np.full((1, 3, L), np.nan))
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        window_features(np.zeros((3, L)))


# --------------------------------------------------------------------------------------------- Frechet distance
def test_frechet_known_answers(sets):
    fa = sets[3]["real"]
    assert abs(frechet_distance(fa, fa)) < 1e-6 * F
    sd = fa.std(axis=0)
    # constant shift of 2 real-SDs in every feature: covariances equal, FD = |2|^2 * F
    assert frechet_distance(fa, fa + 2 * sd) == pytest.approx(4 * F, rel=1e-6)
    # scaled about the real mean by 2: FD = tr(S) + 4 tr(S) - 4 tr(S) = tr(S) = F * N / (N - 1)
    mu = fa.mean(axis=0)
    assert frechet_distance(fa, mu + 2 * (fa - mu)) == pytest.approx(F * N / (N - 1), rel=1e-6)
    # standardised by the real set: invariant to per-feature units
    scale = np.exp(np.random.default_rng(0).normal(0, 3, F))
    fb = sets[3]["other"]
    assert frechet_distance(fa * scale, fb * scale) == pytest.approx(frechet_distance(fa, fb), rel=1e-6)


def test_frechet_eps_fallback_keeps_identical_sets_at_zero(monkeypatch):
    fa = np.random.default_rng(0).standard_normal((50, 5))
    calls = []
    real_sqrtm = generation.sqrtm

    def failing_once(a):
        calls.append(1)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(generation, "sqrtm", failing_once)
    assert abs(frechet_distance(fa, fa)) < 1e-9 and len(calls) == 2
    calls.clear()
    assert frechet_distance(fa, fa + 2 * fa.std(axis=0)) == pytest.approx(4 * 5, rel=1e-6)


def test_feature_frechet_same_vs_shifted(sets):
    real, other, shifted, feats = sets
    assert abs(feature_frechet_distance(real, real)) < 1e-6 * F
    same = frechet_distance(feats["real"], feats["other"])
    assert 0 < same < 0.1 * F
    for name in SHIFTS:
        assert frechet_distance(feats["real"], feats[name]) > 10 * same, name


# ------------------------------------------------------------------------------------------ discriminative score
def test_discriminative_identical_and_same_distribution(sets):
    real, other, _, _ = sets
    out = discriminative_score(real, real, return_details=True)
    assert out["score"] < 0.1 and out["accuracy"] == pytest.approx(0.5, abs=0.1) and out["n_per_class"] == N
    assert discriminative_score(real, other, seed=0) < 0.15
    # unequal sizes: the larger set is subsampled to balance the classes
    out = discriminative_score(real, other[:120], return_details=True)
    assert out["n_per_class"] == 120 and out["score"] < 0.15


@pytest.mark.parametrize("name", list(SHIFTS))
def test_discriminative_shifted(sets, name):
    real, _, shifted, _ = sets
    assert discriminative_score(real, shifted[name], seed=0) > 0.35


# --------------------------------------------------------------------------------------------------- TSTR / TRTR
@pytest.fixture(scope="module")
def activity():
    return labelled(200, 10), labelled(200, 11)


def test_tstr_equals_trtr_on_real_training_data(activity):
    (xtr, ytr), (xte, yte) = activity
    trtr = trtr_macro_f1(xtr, ytr, xte, yte)
    assert trtr > 0.9
    assert tstr_macro_f1(xtr, ytr, xte, yte) == trtr


def test_tstr_shuffled_labels_is_chance(activity):
    (xtr, ytr), (xte, yte) = activity
    shuffled = np.random.default_rng(0).permutation(ytr)
    assert tstr_macro_f1(xtr, shuffled, xte, yte) < 0.4      # 4 balanced classes: chance ~0.25
    assert tstr_macro_f1(xtr, np.zeros_like(ytr), xte, yte) < 0.2   # one class: predicts it everywhere


# ------------------------------------------------------------------------------------ reconstruction correlation
def test_reconstruction_correlation(sets):
    real = sets[0]
    self_corr = reconstruction_correlation(real, real)
    assert self_corr["flat"] == pytest.approx(1.0) and np.allclose(self_corr["per_axis"], 1.0)
    noise = np.random.default_rng(5).standard_normal(real.shape)
    indep = reconstruction_correlation(real, noise)
    assert abs(indep["flat"]) < 0.02 and abs(indep["per_axis_mean"]) < 0.02 and len(indep["per_axis"]) == 3
    assert reconstruction_correlation(real, -real)["per_axis_mean"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_correlation(real, real[:5])


# ------------------------------------------------------------------------------------------------------- report
def test_generation_report_bundles_metrics(activity):
    (xtr, ytr), (xte, yte) = activity
    fake = xtr + 0.05 * np.random.default_rng(3).standard_normal(xtr.shape).astype(np.float32)
    rep = generation_report(xtr, fake, real_y=ytr, fake_y=ytr, test_x=xte, test_y=yte, paired=True,
                            classifier="logistic")
    assert rep["frechet"] == pytest.approx(feature_frechet_distance(xtr, fake))
    assert rep["discriminative_score"] == discriminative_score(xtr, fake, classifier="logistic")
    assert rep["trtr_macro_f1"] == trtr_macro_f1(xtr, ytr, xte, yte)
    assert rep["tstr_macro_f1"] == tstr_macro_f1(fake, ytr, xte, yte)
    assert rep["reconstruction"]["flat"] > 0.9
    minimal = generation_report(xtr, fake, classifier="logistic")
    assert {"frechet", "discriminative_score", "discriminative_accuracy"} <= set(minimal)
    assert "tstr_macro_f1" not in minimal and "reconstruction" not in minimal
