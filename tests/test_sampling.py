"""fast_sample: argument validation, reproducibility, conditioning paths, guidance, float64 end to end."""
import copy

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


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_a_float64_model_samples_in_float64_and_matches_a_float64_reference(model, method):
    """fast_sample on a float64 model against the ODE written out in float64 from the same noise: state, time grid,
    steps and network all float64 (the float32 model's answer is ~1e-7 away, far outside the tolerance)."""
    double = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        double.normalizer.mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
    z = torch.randn(2, model.z_dim, dtype=torch.float64)
    steps = 3
    out = flowfm.fast_sample(double, z=z, steps=steps, method=method, generator=torch.Generator().manual_seed(5))
    assert out.dtype == torch.float64
    x = torch.randn((2, 3, 48), generator=torch.Generator().manual_seed(5)).double()  # same draw, float32 -> 64
    h = 1.0 / steps
    with torch.no_grad():
        v = lambda x, t: double.velocity_net(x, torch.full((2,), t, dtype=torch.float64), z)  # noqa: E731
        for n in range(steps):
            if method == "euler":
                x = x + h * v(x, n * h)
            else:
                k1 = v(x, n * h)
                x = x + h / 2 * (k1 + v(x + h * k1, (n + 1) * h))
        ref = double.normalizer.denormalize(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    out32 = flowfm.fast_sample(model, z=z.float(), steps=steps, method=method,
                               generator=torch.Generator().manual_seed(5))
    assert out32.dtype == torch.float32
    shift = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)[:, None]  # the float32 model's mean is 0
    torch.testing.assert_close(out32.double() + shift, ref, rtol=1e-4, atol=1e-4)
    assert float((out32.double() + shift - ref).abs().max()) > 1e-10  # it did run in float32
