"""Observed solver order on FlowFM's own velocity network in float64 (issue 20), and the time embedding behind it.

The field is a tiny U-Net with every weight perturbed (the output conv starts at zero, so an unperturbed network is
the zero field), in float64 end to end; the reference is RK4 on 8x finer steps. The legacy time scale (1000) is
measured too: it makes the field oscillate in t faster than these grids resolve, which is what hid every order.
"""
import math

import pytest
import torch

from flowfm.baselines.diffusion import DiffusionConfig
from flowfm.config import FlowFMConfig
from flowfm.solvers import METHODS, integrate
from flowfm.velocity import UNet1d, sinusoidal_embedding

EXPECTED_ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
STEPS = (4, 8, 16)
REF_STEPS = 128


def _perturbed_field(scale: float, seed: int = 0):
    torch.manual_seed(seed)
    net = UNet1d(3, 12, channels=(8, 16), cond_dim=16, groups=4, time_embedding_scale=scale).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    z = torch.randn(2, 12, dtype=torch.float64)
    seen = set()

    def field(x, t):
        seen.update((x.dtype, t.dtype))
        return net(x, t, z), None

    return field, torch.randn(2, 3, 19, dtype=torch.float64), seen


def _observed_orders(field, x0, method):
    ref = integrate(field, x0, REF_STEPS, "rk4")
    errors = [float((integrate(field, x0, n, method) - ref).norm() / ref.norm()) for n in STEPS]
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)], errors


@pytest.mark.parametrize("method", METHODS)
def test_observed_order_on_a_perturbed_flowfm_field_in_float64(method):
    field, x0, seen = _perturbed_field(FlowFMConfig.time_embedding_scale)
    with torch.inference_mode():
        orders, errors = _observed_orders(field, x0, method)
    order = EXPECTED_ORDER[method]
    # rk4 reaches ~1e-9 here: below the float32 floor, so this also fails if any stage drops to float32
    assert all(o > order - 0.25 for o in orders), f"{method}: errors {errors}, observed orders {orders}"
    assert seen == {torch.float64}, f"the field saw dtypes {seen}; float64 end to end expected"


def test_the_legacy_time_scale_hides_the_order_at_few_steps():
    field, x0, _ = _perturbed_field(1000.0)
    with torch.inference_mode():
        orders, errors = _observed_orders(field, x0, "rk4")
    assert max(orders) < 3, f"the 1000 t embedding was expected to keep RK4 off its order here: {orders}"


def test_embedding_formula_dtype_and_legacy_bits():
    t = torch.rand(7, dtype=torch.float64)
    dim, scale = 10, 1000.0
    k = torch.arange(dim // 2, dtype=torch.float64)
    angles = scale * t[:, None] * torch.exp(-math.log(10_000.0) * k / (dim // 2))[None, :]
    expected = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    e64 = sinusoidal_embedding(t, dim, scale=scale)
    assert e64.dtype == torch.float64
    torch.testing.assert_close(e64, expected, rtol=0, atol=1e-12)
    t32 = t.float()  # float32 t: the pre-change float32 computation, bit for bit (checkpoints behave as trained)
    freqs32 = torch.exp(-math.log(10_000.0) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    old = 1000.0 * t32[:, None] * freqs32[None, :]
    assert torch.equal(sinusoidal_embedding(t32, dim), torch.cat([torch.cos(old), torch.sin(old)], dim=-1))


def test_configs_without_the_field_load_the_legacy_scale_and_new_ones_the_new_default():
    assert FlowFMConfig().time_embedding_scale == 1.0
    stored = FlowFMConfig(preset="tiny").to_dict()
    del stored["time_embedding_scale"]
    assert FlowFMConfig.from_dict(stored).time_embedding_scale == 1000.0
    assert FlowFMConfig.from_dict({**stored, "time_embedding_scale": 3.0}).time_embedding_scale == 3.0
    assert DiffusionConfig().time_embedding_scale == 1000.0  # t = k / T: one unit per timestep, as before
    assert DiffusionConfig.from_dict({"preset": "tiny"}).time_embedding_scale == 1000.0
    from flowfm.model import FlowFM

    assert FlowFM(FlowFMConfig.from_dict(stored)).velocity_net.time_embedding_scale == 1000.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_time_embedding_scale_is_refused(bad):
    with pytest.raises(ValueError, match="time_embedding_scale"):
        FlowFMConfig(time_embedding_scale=bad)
    with pytest.raises(ValueError, match="time_embedding_scale"):
        UNet1d(3, 4, channels=(8, 16), cond_dim=8, groups=4, time_embedding_scale=bad)


def test_references_keep_float64():
    """The eager references compute in promote_types(dtype, float32): a float64 model never passes through float32
    (the float64 solver and conv-block paths rely on this)."""
    import torch.nn.functional as F

    from flowfm_kernels import euler_step_ref, gn_film_silu_ref, rk4_combine_ref

    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 8, 5, generator=g, dtype=torch.float64) + 1.0
    gamma, beta = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    scale, shift = torch.randn(2, 8, generator=g, dtype=torch.float64), torch.randn(2, 8, generator=g,
                                                                                   dtype=torch.float64)
    y = gn_film_silu_ref(h, gamma, beta, scale, shift, 4)
    grouped = h.reshape(2, 4, -1)
    norm = ((grouped - grouped.mean(-1, keepdim=True)) / torch.sqrt(grouped.var(-1, unbiased=False, keepdim=True)
                                                                    + 1e-5)).reshape_as(h)
    expected = F.silu((norm * gamma[:, None] + beta[:, None]) * (1 + scale[:, :, None]) + shift[:, :, None])
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)

    x = torch.full((1, 1, 4), 1.0, dtype=torch.float64)
    v = torch.full_like(x, 1e-12)  # below float32's resolution at 1.0
    dt = torch.ones(1, dtype=torch.float64)
    assert (euler_step_ref(x, v, dt) - 1.0).abs().min() > 0
    assert (rk4_combine_ref(x, v, v, v, v, dt) - 1.0).abs().min() > 0


def test_cli_pretrain_sets_the_time_embedding_scale(tmp_path, capsys):
    import numpy as np

    from flowfm.checkpoint import load_model
    from flowfm.cli import main
    from flowfm.data import WindowDataset, save_folder

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3, 48)).astype(np.float32)
    save_folder(WindowDataset(x=x, pid=np.repeat(np.arange(4), 8)), tmp_path / "toy")
    args = ["pretrain", "--data", str(tmp_path / "toy"), "--preset", "tiny", "--epochs", "1", "--batch-size", "16",
            "--no-progress", "--null-fit-steps", "0"]
    assert main(args + ["--out", str(tmp_path / "run"), "--time-embedding-scale", "7"]) == 0
    model = load_model(tmp_path / "run" / "model")
    assert model.config.time_embedding_scale == 7.0 and model.velocity_net.time_embedding_scale == 7.0
    assert main(args + ["--out", str(tmp_path / "ssl"), "--method", "ssl-wearables",
                        "--time-embedding-scale", "7"]) == 2
    assert "--time-embedding-scale applies to --method flowfm" in capsys.readouterr().err
