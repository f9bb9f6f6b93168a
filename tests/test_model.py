"""FlowFM model: shapes, the joint loss against a hand computation, gradient flow, any-length windows."""
import pytest
import torch
import torch.nn.functional as F

import flowfm
from flowfm.config import FlowFMConfig
from flowfm.encoder import BlurPool1d, ResNetEncoder


def _model(**kw):
    torch.manual_seed(0)
    model = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=64, **kw))
    # the output conv and FiLM layers start at zero; randomise them so every path carries signal and gradient
    for name, p in model.velocity_net.named_parameters():
        if "out_conv" in name or "film" in name:
            torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        model.normalizer.mean.copy_(torch.tensor([0.1, -0.2, 0.9]))
        model.normalizer.std.copy_(torch.tensor([0.5, 0.4, 0.3]))
    return model


def test_harnet10_encoder_matches_ssl_wearables_shape():
    enc = ResNetEncoder(3, width=1.0)
    n_params = sum(p.numel() for p in enc.parameters())
    assert 10.0e6 < n_params < 11.0e6, n_params
    assert enc._stage_lengths(300) == [300, 150, 75, 15, 3, 1]
    assert enc(torch.randn(2, 3, 300)).shape == (2, 1024)
    assert enc.stage_dims == [64, 128, 256, 512, 1024]


def _hooked_stage_pools(enc: ResNetEncoder, x: torch.Tensor) -> list:
    """Reference readout: the time-mean of every BlurPool1d output, captured by forward hooks during enc(x)."""
    pools = []
    handles = [m.register_forward_hook(lambda _m, _i, out: pools.append(out.mean(dim=-1)))
               for m in enc.features if isinstance(m, BlurPool1d)]
    try:
        z = enc(x)
    finally:
        for h in handles:
            h.remove()
    return pools, z


@pytest.mark.parametrize("kind", ["odd", "non_contiguous", "short"])
def test_pooled_stages_are_the_pooled_stage_outputs_and_end_with_z(kind):
    torch.manual_seed(0)
    enc = ResNetEncoder(3, width=0.125).eval()
    x = {"odd": torch.randn(2, 3, 97),
         "non_contiguous": torch.randn(2, 97, 3).transpose(1, 2),
         "short": torch.randn(2, 3, 7)}[kind]                     # shorter than min_length: tiled as in forward
    assert x.is_contiguous() == (kind != "non_contiguous")
    with torch.no_grad():
        stages = enc.pooled_stages(x)
        pools, z = _hooked_stage_pools(enc, x)
    assert len(enc.stage_dims) == 5 and enc.stage_dims[-1] == enc.out_dim
    assert stages.shape == (2, sum(enc.stage_dims))
    torch.testing.assert_close(stages[:, -enc.out_dim:], z, rtol=0, atol=1e-6)
    blocks = torch.split(stages, enc.stage_dims, dim=1)
    assert len(pools) == len(blocks) == 5
    for i, (block, ref) in enumerate(zip(blocks, pools)):
        torch.testing.assert_close(block, ref, rtol=0, atol=1e-6, msg=f"stage {i}")


def test_blurpool_kernel_is_normalised_box_convolution():
    pool = BlurPool1d(channels=2, factor=2, order=2)
    torch.testing.assert_close(pool.kernel[0, 0], torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8)
    x = torch.ones(1, 2, 20)
    torch.testing.assert_close(pool(x)[..., 1:-1], torch.ones(1, 2, 8))  # constant in, constant out (interior)


@pytest.mark.parametrize("length", [16, 17, 64, 299, 301])
def test_any_length_at_least_16(length):
    model = _model()
    x = torch.randn(2, 3, length)
    assert model.encode(x).shape == (2, model.z_dim)
    assert model.velocity(x, torch.rand(2), torch.randn(2, model.z_dim)).shape == (2, 3, length)


def test_loss_equals_hand_computation():
    model = _model(sigma_min=0.05)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 64, generator=g) * 0.5
    x0 = torch.randn(5, 3, 64, generator=g)
    t = torch.rand(5, generator=g)
    drop = torch.tensor([True, False, False, True, False])
    view = x.flip(-1)
    loss = model.loss(x, x0=x0, t=t, drop=drop, view=view)

    s = 0.05
    mean, std = model.normalizer.mean[:, None], model.normalizer.std[:, None]
    x1 = (x - mean) / std
    xt = (1 - (1 - s) * t[:, None, None]) * x0 + t[:, None, None] * x1
    z = model.encoder(view)
    z = torch.stack([model.null_z if d else zi for zi, d in zip(z, drop)])
    v = model.velocity_net(xt, t, z)
    expected = ((v - (x1 - (1 - s) * x0)) ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)


def test_loss_is_reproducible_with_generator_and_varies_without():
    model = _model()
    x = torch.randn(4, 3, 64)
    a = model.loss(x, generator=torch.Generator().manual_seed(1))
    b = model.loss(x, generator=torch.Generator().manual_seed(1))
    c = model.loss(x, generator=torch.Generator().manual_seed(2))
    assert a == b and a != c


@pytest.mark.parametrize("stop_grad", [False, True])
def test_gradient_reaches_encoder_unless_stopped(stop_grad):
    model = _model(stop_grad_encoder=stop_grad)
    loss = model.loss(torch.randn(4, 3, 64), drop=torch.zeros(4, dtype=torch.bool))
    loss.backward()
    enc_grad = sum(float(p.grad.abs().sum()) for p in model.encoder.parameters() if p.grad is not None)
    vel_grad = sum(float(p.grad.abs().sum()) for p in model.velocity_net.parameters() if p.grad is not None)
    assert vel_grad > 0
    assert (enc_grad == 0) if stop_grad else (enc_grad > 0)


def test_condition_dropout_replaces_z_by_null_vector():
    model = _model()
    x, x0, t = torch.randn(3, 3, 64), torch.randn(3, 3, 64), torch.rand(3)
    drop = torch.ones(3, dtype=torch.bool)
    a = model.loss(x, x0=x0, t=t, drop=drop, view=x)
    b = model.loss(x, x0=x0, t=t, drop=drop, view=torch.randn(3, 3, 64))  # encoder input irrelevant when dropped
    torch.testing.assert_close(a, b)


def test_augment_view_is_mild_and_identical_view_is_identity():
    from flowfm.views import encoder_view

    cfg = FlowFMConfig(preset="tiny")
    x = torch.randn(8, 3, 300) * 0.2 + torch.tensor([0.0, 0.0, 1.0])[:, None]
    v = encoder_view(x, cfg, torch.Generator().manual_seed(0))
    assert v.shape == x.shape and not torch.equal(v, x)
    # gravity stays roughly where it was: rotation <= 15 deg, scale 0.8..1.2
    cos = F.cosine_similarity(v.mean(-1), x.mean(-1), dim=1)
    assert (cos > 0.9).all(), cos
    assert torch.equal(encoder_view(x, FlowFMConfig(preset="tiny", encoder_view="identical")), x)


def test_bad_inputs_get_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match="channels"):
        model.encode(torch.randn(2, 4, 64))
    with pytest.raises(ValueError, match="at least 16"):
        model.loss(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"\(B, C, L\)"):
        model.encode(torch.randn(3, 64))
    with pytest.raises(ValueError, match="preset"):
        FlowFMConfig(preset="huge")
    with pytest.raises(ValueError, match="sigma_min"):
        FlowFMConfig(sigma_min=1.5)
