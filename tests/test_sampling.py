"""fast_sample: argument validation, reproducibility, conditioning paths, guidance."""
import pytest
import torch

import flowfm
from flowfm.config import FlowFMConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=48, p_uncond=0.1))  # null vector: dropout-trained
    for name, p in m.velocity_net.named_parameters():
        if "out_conv" in name or "film" in name:
            torch.nn.init.normal_(p, std=0.05)
    return m


def test_shapes_and_reproducibility(model):
    z = torch.randn(3, model.z_dim)
    a = flowfm.fast_sample(model, z=z, steps=3, generator=torch.Generator().manual_seed(7))
    b = flowfm.fast_sample(model, z=z, steps=3, generator=torch.Generator().manual_seed(7))
    c = flowfm.fast_sample(model, z=z, steps=3, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 3, 48) and torch.equal(a, b) and not torch.equal(a, c)
    assert flowfm.fast_sample(model, n=2, steps=2).shape == (2, 3, 48)
    assert flowfm.fast_sample(model, n=2, steps=2, length=37).shape == (2, 3, 37)


def test_x_ref_equals_encoded_z(model):
    x_ref = torch.randn(2, 3, 48)
    with torch.no_grad():
        z = model.eval().encode(x_ref)
    a = flowfm.fast_sample(model, x_ref=x_ref, steps=2, generator=torch.Generator().manual_seed(0))
    b = flowfm.fast_sample(model, z=z, steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


def test_guidance_one_equals_plain_and_other_differs(model):
    z = torch.randn(2, model.z_dim)
    kw = dict(z=z, steps=2, method="euler")
    plain = flowfm.fast_sample(model, generator=torch.Generator().manual_seed(0), **kw)
    w1 = flowfm.fast_sample(model, guidance=1.0, generator=torch.Generator().manual_seed(0), **kw)
    w3 = flowfm.fast_sample(model, guidance=3.0, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(plain, w1)
    assert not torch.allclose(plain, w3)


def test_denormalises_output(model):
    with torch.no_grad():
        model.normalizer.mean.fill_(5.0)
    try:
        x = flowfm.fast_sample(model, n=64, steps=1, method="euler")
        assert abs(float(x.mean()) - 5.0) < 1.0
    finally:
        with torch.no_grad():
            model.normalizer.mean.fill_(0.0)


@pytest.mark.parametrize("make_kwargs, message", [
    (lambda d: dict(n=2, steps=0), "steps"),
    (lambda d: dict(n=2, steps=2.5), "steps"),
    (lambda d: dict(n=2, method="rk45"), "method"),
    (lambda d: dict(z=torch.randn(2, d + 1)), "shape"),
    (lambda d: dict(z=torch.full((2, d), float("nan"))), "NaN"),
    (lambda d: dict(), "pass z=, x_ref= or n="),
    (lambda d: dict(n=0), "positive"),
    (lambda d: dict(n=2, guidance=float("inf")), "guidance"),
    (lambda d: dict(z=torch.randn(2, d), x_ref=torch.randn(2, 3, 48)), "at most one"),
    (lambda d: dict(z=torch.randn(2, d), n=3), "disagrees"),
    (lambda d: dict(x_ref=torch.full((2, 3, 48), float("inf"))), "finite"),
])
def test_validation(model, make_kwargs, message):
    with pytest.raises(ValueError, match=message):
        flowfm.fast_sample(model, **make_kwargs(model.z_dim))


def test_a_model_without_condition_dropout_refuses_unconditional_and_guided_sampling():
    torch.manual_seed(0)
    m = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=48, p_uncond=0.0))
    z = torch.randn(2, m.z_dim)
    assert flowfm.fast_sample(m, z=z, steps=2).shape == (2, 3, 48)
    for kwargs in (dict(n=2), dict(z=z, guidance=2.0)):
        with pytest.raises(ValueError, match="without condition dropout"):
            flowfm.fast_sample(m, steps=2, **kwargs)
