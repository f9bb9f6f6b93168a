"""Baselines (docs/design.md §4): the DDPM joint model (schedule, loss, samplers against an analytic Gaussian), the
SSL-Wearables multi-task model (pretext transforms, labels, learning), checkpoints and the CLI."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import flowfm
from flowfm.baselines import (DiffusionConfig, DiffusionFM, SSLWearables, SSLWearablesConfig,
                              build_model, ddim_timesteps)
from flowfm.baselines import pretext as P
from flowfm.checkpoint import load_model


def _randomise_generator(model):
    # the output conv and FiLM layers start at zero; randomise them so every path carries signal and gradient
    for name, p in model.velocity_net.named_parameters():
        if "out_conv" in name or "film" in name:
            torch.nn.init.normal_(p, std=0.05)


def _diffusion(window=32, **kw):
    torch.manual_seed(0)
    kw.setdefault("p_uncond", 0.1)  # a dropout-trained null vector: unconditional and guided sampling run
    model = DiffusionFM(DiffusionConfig(preset="tiny", window=window, **kw))
    _randomise_generator(model)
    with torch.no_grad():
        model.normalizer.mean.copy_(torch.tensor([0.1, -0.2, 0.9]))
        model.normalizer.std.copy_(torch.tensor([0.5, 0.4, 0.3]))
    return model


# ------------------------------------------------------------------------------------------------ diffusion
def test_ddpm_schedule_matches_numpy():
    model = DiffusionFM(DiffusionConfig(preset="tiny", window=32, p_uncond=0.1))  # guided sampling below
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1.0 - betas)
    np.testing.assert_allclose(model.betas.numpy(), betas, rtol=1e-12, atol=0)
    np.testing.assert_allclose(model.alphas_cumprod.numpy(), abar, rtol=1e-12, atol=0)
    assert 3.9e-5 < model.alphas_cumprod[-1] < 4.2e-5  # DDPM's abar_T ~ 4.0e-5: x_T is almost pure noise
    assert "alphas_cumprod" not in model.state_dict()  # rebuilt from the config, not stored
    model.to(torch.bfloat16)  # a low-precision model keeps a float64 schedule (bf16 would round 1 - abar_0 to 0)
    assert model.alphas_cumprod.dtype == torch.float64 and model.alphas_cumprod[0] == abar[0]
    x = flowfm.fast_sample(model, z=torch.randn(2, model.z_dim), steps=3, method="ddim", guidance=2.0)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    taus = ddim_timesteps(1000, 50)
    assert len(taus) == 50 and taus[0] == 999 and taus[-1] == 0 and all(np.diff(taus) < 0)
    assert ddim_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(1000, 1001)


def test_diffusion_config_round_trip_and_validation():
    cfg = DiffusionConfig(preset="tiny", window=40, T=50, beta_start=1e-3, beta_end=0.05, p_uncond=0.2)
    assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(cfg, flowfm.FlowFMConfig)
    for bad in (dict(T=1), dict(beta_start=0.0), dict(beta_start=0.03, beta_end=0.02), dict(beta_end=1.0)):
        with pytest.raises(ValueError):
            DiffusionConfig(preset="tiny", **bad)
    with pytest.raises(ValueError, match="unknown"):
        DiffusionConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_diffusion_loss_equals_hand_computation():
    model = _diffusion()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 32, generator=g) * 0.5
    noise = torch.randn(5, 3, 32, generator=g)
    k = torch.tensor([0, 17, 500, 998, 999])
    drop = torch.tensor([True, False, False, True, False])
    view = x.flip(-1)
    loss = model.loss(x, noise=noise, timesteps=k, drop=drop, view=view)

    abar = torch.from_numpy(np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))).float()[k][:, None, None]
    x_data = (x - model.normalizer.mean[:, None]) / model.normalizer.std[:, None]
    x_t = abar.sqrt() * x_data + (1 - abar).sqrt() * noise
    z = model.encoder(view)
    z = torch.stack([model.null_z if d else zi for zi, d in zip(z, drop)])
    eps_hat = model.velocity_net(x_t, k.float() / 1000, z)
    torch.testing.assert_close(loss, ((eps_hat - noise) ** 2).mean(), rtol=1e-6, atol=1e-7)
    per_sample = model.loss(x, noise=noise, timesteps=k, drop=drop, view=view, reduction="per_sample")
    torch.testing.assert_close(per_sample, ((eps_hat - noise) ** 2).flatten(1).mean(1), rtol=1e-6, atol=1e-7)

    a = model.loss(x, generator=torch.Generator().manual_seed(1))
    assert a == model.loss(x, generator=torch.Generator().manual_seed(1))
    assert a != model.loss(x, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="timesteps"):
        model.loss(x, timesteps=torch.tensor([0, 1, 2, 3, 1000]))


@pytest.mark.parametrize("stop_grad", [False, True])
def test_diffusion_gradient_reaches_encoder_unless_stopped(stop_grad):
    model = _diffusion(stop_grad_encoder=stop_grad)
    model.loss(torch.randn(4, 3, 32), drop=torch.zeros(4, dtype=torch.bool)).backward()
    enc_grad = sum(float(p.grad.abs().sum()) for p in model.encoder.parameters() if p.grad is not None)
    eps_grad = sum(float(p.grad.abs().sum()) for p in model.velocity_net.parameters() if p.grad is not None)
    assert eps_grad > 0
    assert (enc_grad == 0) if stop_grad else (enc_grad > 0)


class GaussianEps(nn.Module):
    """The exact eps(x_k, k) = E[eps | x_k] for data ~ N(mu_c, s_c^2) iid per channel (normalised space):
    x_k ~ N(sqrt(a) mu, a s^2 + 1 - a), so E[eps | x_k] = sqrt(1 - a) (x_k - sqrt(a) mu) / (a s^2 + 1 - a)."""

    def __init__(self, mu, s, alphas_cumprod, T):
        super().__init__()
        self.register_buffer("mu", torch.tensor(mu, dtype=torch.float64)[None, :, None])
        self.register_buffer("s", torch.tensor(s, dtype=torch.float64)[None, :, None])
        self.register_buffer("abar", alphas_cumprod.clone())
        self.T = T

    def forward(self, x, t, z):
        k = torch.round(t.double() * self.T).long()  # the model feeds t = k / T
        a = self.abar[k][:, None, None]
        eps = (1 - a).sqrt() * (x.double() - a.sqrt() * self.mu) / (a * self.s ** 2 + 1 - a)
        return eps.to(x.dtype)


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_samplers_with_exact_eps_recover_a_gaussian(method):
    model = DiffusionFM(DiffusionConfig(preset="tiny", window=16, p_uncond=0.1))
    mu, s = [0.5, -1.0, 2.0], [0.5, 1.5, 0.8]
    model.velocity_net = GaussianEps(mu, s, model.alphas_cumprod, model.config.T)
    mean, std = torch.tensor([0.1, -0.2, 0.9]), torch.tensor([0.5, 0.4, 0.3])
    with torch.no_grad():
        model.normalizer.mean.copy_(mean)
        model.normalizer.std.copy_(std)
    x = flowfm.fast_sample(model, n=512, steps=1000, method=method, generator=torch.Generator().manual_seed(0))
    assert x.shape == (512, 3, 16)
    want_mean = mean + std * torch.tensor(mu)
    want_std = std * torch.tensor(s)
    got_mean, got_std = x.mean(dim=(0, 2)), x.std(dim=(0, 2))
    # 8192 iid values per channel: standard errors std/90 (mean) and 0.8 % (std); tolerances ~5 standard errors
    assert ((got_mean - want_mean).abs() < 0.06 * want_std).all(), (got_mean, want_mean)
    torch.testing.assert_close(got_std, want_std, rtol=0.04, atol=0)


def test_fast_sample_ddpm_and_ddim_validate_and_reproduce():
    model = _diffusion(window=32, T=20)
    x_ref = torch.randn(2, 3, 32)
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    a = flowfm.fast_sample(model, x_ref=x_ref, steps=20, method="ddpm", generator=g(0))
    b = flowfm.fast_sample(model, x_ref=x_ref, steps=20, method="ddpm", generator=g(0))
    c = flowfm.fast_sample(model, x_ref=x_ref, steps=20, method="ddpm", generator=g(1))
    assert a.shape == (2, 3, 32) and torch.isfinite(a).all() and torch.equal(a, b) and not torch.equal(a, c)
    d = flowfm.fast_sample(model, n=3, steps=5, method="ddim", generator=g(0))
    assert d.shape == (3, 3, 32) and torch.isfinite(d).all()
    plain = flowfm.fast_sample(model, x_ref=x_ref, steps=5, method="ddim", generator=g(0))
    w1 = flowfm.fast_sample(model, x_ref=x_ref, steps=5, method="ddim", guidance=1.0, generator=g(0))
    w3 = flowfm.fast_sample(model, x_ref=x_ref, steps=5, method="ddim", guidance=3.0, generator=g(0))
    torch.testing.assert_close(plain, w1)
    assert not torch.allclose(plain, w3)
    assert model.nfe("ddpm", 20) == 20 and model.nfe("ddim", 5) == 5

    with pytest.raises(ValueError, match="unknown for this model"):
        flowfm.fast_sample(model, n=2, steps=5, method="euler")
    with pytest.raises(ValueError, match="unknown for this model"):
        flowfm.fast_sample(model, n=2, steps=5, method="bogus")
    with pytest.raises(ValueError, match="all T=20 steps"):
        flowfm.fast_sample(model, n=2, steps=5, method="ddpm")
    with pytest.raises(ValueError, match="steps <= T"):
        flowfm.fast_sample(model, n=2, steps=21, method="ddim")
    with pytest.raises(ValueError, match="flow solvers"):
        model.generate(torch.randn(1, 3, 32), model.null_condition(1), 5, "heun")


def test_diffusion_save_load_round_trip(tmp_path):
    model = _diffusion(window=32, T=20, beta_end=0.1)
    model.save(tmp_path / "ckpt")
    for loaded in (load_model(tmp_path / "ckpt"), flowfm.FlowFM.load(tmp_path / "ckpt"),
                   DiffusionFM.load(tmp_path / "ckpt")):
        assert type(loaded) is DiffusionFM and loaded.config == model.config
        assert torch.equal(loaded.alphas_cumprod, model.alphas_cumprod)
        for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
    x = torch.randn(3, 3, 32)
    a = flowfm.fast_sample(model, x_ref=x, steps=4, method="ddim", generator=torch.Generator().manual_seed(0))
    b = flowfm.fast_sample(loaded, x_ref=x, steps=4, method="ddim", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ SSL pretext
def _ramp(b, c, length):
    """Distinct values: x[b, c, l] = 1000 c + l (so any reordering of time samples is visible)."""
    return (1000.0 * torch.arange(c)[:, None] + torch.arange(length)[None, :]).expand(b, c, length).clone()


def _only(task, x, seed=0, **kw):
    return P.pretext_batch(x, tasks=(task,), axis_swap=False, rotation=False,
                           generator=torch.Generator().manual_seed(seed), **kw)


def test_reversal_reverses_and_labels_match():
    x = torch.randn(64, 3, 40)
    out, labels = _only("aot", x)
    assert set(labels) == {"aot"} and labels["aot"].dtype == torch.long
    on = labels["aot"].bool()
    assert 0 < on.sum() < 64
    assert torch.equal(out[on], x[on].flip(-1)) and torch.equal(out[~on], x[~on])


def test_permute_segments_matches_hand_loop():
    x = torch.randn(2, 3, 20)
    lengths = torch.tensor([[3, 7, 4, 6], [5, 5, 5, 5]])
    perm = torch.tensor([[2, 0, 3, 1], [3, 2, 1, 0]])
    out = P.permute_segments(x, lengths, perm)
    for b in range(2):
        segs = torch.split(x[b], lengths[b].tolist(), dim=-1)
        torch.testing.assert_close(out[b], torch.cat([segs[j] for j in perm[b].tolist()], dim=-1), rtol=0, atol=0)


def test_random_permutation_shuffles_four_segments_and_labels_match():
    b, length = 256, 64
    lengths, perm = P.random_segments(b, length, 4, 10, torch.Generator().manual_seed(0))
    m = min(10, length // 8)
    assert (lengths >= m).all() and (lengths.sum(1) == length).all()
    assert not (perm == torch.arange(4)).all(1).any()  # never the identity: label 1 means "changed"
    assert len({tuple(p) for p in perm.tolist()}) == 23  # every non-identity order occurs
    x = _ramp(b, 3, length)
    out = P.permute_segments(x, lengths, perm)
    for i in range(0, b, 17):
        segs = torch.split(x[i], lengths[i].tolist(), dim=-1)
        out_segs = torch.split(out[i], lengths[i][perm[i]].tolist(), dim=-1)
        for j, seg in enumerate(out_segs):
            assert torch.equal(seg, segs[perm[i, j]])  # the multiset of segments is unchanged
    # through the pretext pipeline: label 1 <=> reordered (a permutation of time samples), label 0 <=> untouched
    out, labels = _only("permute", x)
    on = labels["permute"].bool()
    assert 0 < on.sum() < b
    assert torch.equal(out[~on], x[~on])
    assert not (out[on] == x[on]).all(-1).all(-1).any()
    assert torch.equal(out[on].sort(-1).values, x[on])


def test_time_warp_keeps_shape_and_endpoints_per_axis_and_labels_match():
    b, length = 64, 50
    x = _ramp(b, 3, length) % 1000 + torch.sin(torch.arange(length) / 3.0)  # same signal on every axis
    out, labels = _only("time_warp", x)
    on = labels["time_warp"].bool()
    assert out.shape == x.shape and 0 < on.sum() < b
    assert torch.equal(out[~on], x[~on])
    torch.testing.assert_close(out[..., 0], x[..., 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., -1], x[..., -1], rtol=0, atol=1e-5)
    warped = out[on]
    assert (warped - x[on]).abs().amax(-1).min() > 1e-3  # every axis of a labelled window is warped
    assert (warped[:, 0] - warped[:, 1]).abs().amax(-1).min() > 1e-3  # independently per axis


def test_augmentation_swaps_axes_and_rotates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 20)
    swapped = P.swap_axes(x, g)
    for i in range(32):
        assert any(torch.equal(swapped[i], x[i, list(p)]) for p in itertools.permutations(range(3)))
    assert len({tuple(int((swapped[i, c] == x[i, 0]).all()) for c in range(3)) for i in range(32)}) == 3
    rotated = P.rotate_3d(x, g)
    torch.testing.assert_close(rotated.norm(dim=1), x.norm(dim=1))  # rotations keep |a| at every sample
    assert not torch.allclose(rotated, x)
    # scope "batch" (default, as SSL-Wearables draws one orientation per subject's block): one draw for all
    ones = torch.ones(16, 3, 20) * torch.tensor([0.0, 0.0, 1.0])[:, None]
    for f in (P.swap_axes, P.rotate_3d):
        shared = f(ones, torch.Generator().manual_seed(3), per_window=False)
        assert torch.equal(shared, shared[:1].expand_as(shared))
        assert not torch.equal(shared, ones) or f is P.swap_axes
        each = f(ones, torch.Generator().manual_seed(3), per_window=True)
        assert not torch.equal(each, each[:1].expand_as(each))
    out, labels = P.pretext_batch(torch.randn(512, 3, 64), generator=torch.Generator().manual_seed(1))
    assert out.shape == (512, 3, 64) and set(labels) == set(P.TASKS)
    for y in labels.values():
        assert y.shape == (512,) and 0.4 < float(y.float().mean()) < 0.6
    x = torch.randn(8, 3, 64)
    a, la = P.pretext_batch(x, generator=torch.Generator().manual_seed(5))
    b, lb = P.pretext_batch(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and all(torch.equal(la[k], lb[k]) for k in la)


def _activity_windows(n, length=64, seed=0):
    """Repeated impacts (sharp onset, decaying oscillation) on every axis on top of gravity: reversing time, cutting
    and shuffling, or warping the window are all visible."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 30.0
    period = rng.uniform(0.6, 1.2, size=(n, 1, 1))
    tau = (t[None, None, :] + rng.uniform(0, 1, size=(n, 1, 1)) * period) % period
    osc = np.exp(-tau / 0.12) * np.sin(2 * np.pi * rng.uniform(3, 6, size=(n, 1, 1)) * tau)
    x = osc * rng.uniform(0.3, 0.8, size=(n, 3, 1)) + np.array([0.0, 0.0, 1.0])[None, :, None]
    return torch.from_numpy((x + 0.01 * rng.standard_normal((n, 3, length))).astype(np.float32))


def test_ssl_loss_decreases_on_synthetic_data():
    # the augmentation (tested above) is off here: learning the tasks under arbitrary 3D rotations takes far
    # more steps than a unit test has
    torch.manual_seed(0)
    model = SSLWearables(SSLWearablesConfig(preset="tiny", window=64, axis_swap=False, rotation=False))
    x = _activity_windows(256)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(30):
        batch = x[(step * 32) % 256:(step * 32) % 256 + 32]
        loss = model.loss(batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert abs(first - np.log(2)) < 0.15, losses[:5]
    assert last < first - 0.15, (first, last)
    total, parts = model.loss(x[:64], generator=g, return_parts=True)
    assert set(parts) == set(P.TASKS)
    torch.testing.assert_close(total.item(), float(np.mean([v[0] for v in parts.values()])))


def test_ssl_interface_and_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = SSLWearablesConfig(preset="tiny", window=48, head="mlp", head_hidden=16, p_transform=0.4)
    model = SSLWearables(cfg)
    with torch.no_grad():
        model.encoder.features[1].body[0].running_mean.uniform_()  # a BatchNorm buffer
    assert SSLWearablesConfig.from_dict(cfg.to_dict()) == cfg
    assert model.set_backend("eager") is model and model.fit_normalizer(np.ones((4, 3, 48))) is model
    assert model.num_parameters() == model.num_parameters("encoder") + model.num_parameters("heads")
    model.save(tmp_path / "ssl", metadata={"k": 1})
    loaded = load_model(tmp_path / "ssl")
    assert type(loaded) is SSLWearables and loaded.config == cfg and loaded.checkpoint_metadata == {"k": 1}
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(4, 3, 48)
    model.eval(), loaded.eval()
    assert torch.equal(model.encode(x), loaded.encode(x)) and model.encode(x).shape == (4, model.z_dim)
    model.train(), loaded.train()
    assert torch.equal(model.loss(x, generator=torch.Generator().manual_seed(2)),
                       loaded.loss(x, generator=torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="channels"):
        model.encode(torch.randn(2, 4, 48))
    with pytest.raises(ValueError, match="head"):
        SSLWearablesConfig(head="transformer")


def test_build_model_and_registry():
    from flowfm.methods import METHODS, model_classes

    assert model_classes() == {"flowfm": flowfm.FlowFM, "diffusion": DiffusionFM, "ssl-wearables": SSLWearables}
    assert METHODS == ("flowfm", "diffusion", "ssl-wearables")
    for method, cls in [("flowfm", flowfm.FlowFM), ("diffusion", DiffusionFM), ("ssl-wearables", SSLWearables)]:
        model = build_model(method, {"preset": "tiny", "window": 32})
        assert type(model) is cls and model.method == method and isinstance(model.config, cls.config_type)
    with pytest.raises(ValueError, match="unknown"):
        build_model("vae")
    with pytest.raises(ValueError, match="ssl-wearables"):
        build_model("ssl-wearables", {"sigma_min": 0.1})


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from flowfm.data import WindowDataset, save_folder

    rng = np.random.default_rng(0)
    n, length = 96, 48
    pid = np.repeat(np.arange(6), n // 6)
    y = rng.integers(0, 2, size=n)
    x = _activity_windows(n, length).numpy()
    path = tmp_path_factory.mktemp("data") / "toy"
    save_folder(WindowDataset(x=x, pid=pid, y=y), path)
    return path


@pytest.mark.parametrize("method, cls", [("diffusion", DiffusionFM), ("ssl-wearables", SSLWearables)])
def test_cli_pretrain_baselines_end_to_end(folder, tmp_path, capsys, method, cls):
    from flowfm.cli import main

    run = tmp_path / method
    assert main(["pretrain", "--method", method, "--data", str(folder), "--out", str(run), "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "32", "--no-progress"]) == 0
    assert f"pretraining {method}" in capsys.readouterr().out
    model = load_model(run / "model")
    assert type(model) is cls and model.config.window == 48
    assert (run / "history.json").is_file()
    if method == "ssl-wearables":
        assert main(["evaluate", "--data", str(folder), "--checkpoint", str(run / "model"), "--folds", "3"]) == 0


def test_cli_rejects_flags_of_other_methods(folder, tmp_path, capsys):
    from flowfm.cli import main

    assert main(["pretrain", "--method", "ssl-wearables", "--data", str(folder), "--out", str(tmp_path / "a"),
                 "--p-uncond", "0.2"]) == 2
    assert main(["pretrain", "--method", "diffusion", "--data", str(folder), "--out", str(tmp_path / "b"),
                 "--sigma-min", "0.1"]) == 2
    assert "--sigma-min applies to --method flowfm" in capsys.readouterr().err


def test_clip_x0_bounds_the_ddim_estimate_and_is_a_no_op_when_wide():
    torch.manual_seed(0)
    model = DiffusionFM(DiffusionConfig(preset="tiny", window=32, T=50)).eval()
    x0 = torch.randn(4, 3, 32, generator=torch.Generator().manual_seed(1))
    cond = model.null_condition(4)
    with torch.no_grad():
        free = model.generate(x0, cond, steps=5, method="ddim")
        model.config.clip_x0 = 1e6
        wide = model.generate(x0, cond, steps=5, method="ddim")
        model.config.clip_x0 = 0.25
        one_step = model.generate(x0, cond, steps=1, method="ddim")  # one DDIM step returns x0_hat itself
        ddpm = model.generate(x0, cond, steps=50, method="ddpm", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(wide, free, rtol=1e-4, atol=1e-4)
    assert one_step.abs().max() <= 0.25 + 1e-5
    assert torch.isfinite(ddpm).all()
    with pytest.raises(ValueError, match="clip_x0"):
        DiffusionConfig(preset="tiny", clip_x0=0.0)
