"""How the generator reads z (design levers of issue 3): ``z_norm="layer"`` (a LayerNorm without affine parameters
before the z projection) and ``z_rank=r`` (a rank-r linear bottleneck). Each is checked against what it promises: the
layer-normed generator (the default) cannot see a per-window affine change of z, the plain one (``z_norm="none"``)
can; the rank-r generator cannot see z move along the null space of its first projection, the full-width one can.
Configs written before ``z_norm`` existed load as ``"none"``, the behaviour they were trained with."""
import json

import numpy as np
import pytest
import torch

from flowfm.baselines import DiffusionConfig, DiffusionFM
from flowfm.checkpoint import load_model
from flowfm.config import FlowFMConfig
from flowfm.data.folder import WindowDataset, save_folder
from flowfm.model import FlowFM


def _model(cls=FlowFM, config_cls=FlowFMConfig, **kw) -> FlowFM:
    torch.manual_seed(0)
    model = cls(config_cls(preset="tiny", window=40, **kw)).eval()
    with torch.no_grad():  # FiLM and the output conv start at zero: randomise every generator weight
        for p in model.velocity_net.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return model


def _inputs(b=5, length=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, length, generator=g), torch.rand(b, generator=g)


def _velocity(model, z, seed=1):
    x_t, t = _inputs(z.shape[0], seed=seed)
    with torch.no_grad():
        return model.velocity(x_t, t, z)


def _max_change(model, z, z_moved):
    return float((_velocity(model, z) - _velocity(model, z_moved)).abs().max())


@pytest.mark.parametrize("cls, config_cls", [(FlowFM, FlowFMConfig), (DiffusionFM, DiffusionConfig)])
def test_layer_norm_hides_a_per_window_affine_change_of_z(cls, config_cls):
    z = torch.randn(5, 128, generator=torch.Generator().manual_seed(2)) + 0.5
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0, 7.0])[:, None]  # a different positive scale and offset per window
    shift = torch.tensor([-1.0, 0.0, 0.3, 2.0, -0.2])[:, None]
    z_moved = scale * z + shift
    normed, plain = _model(cls, config_cls), _model(cls, config_cls, z_norm="none")
    assert normed.config.z_norm == "layer"
    assert plain.z_dim == 128
    assert _max_change(normed, z, z_moved) < 1e-4
    assert _max_change(plain, z, z_moved) > 1e-2


def test_layer_norm_still_sees_the_direction_of_z():
    model = _model(z_norm="layer")
    g = torch.Generator().manual_seed(3)
    assert _max_change(model, torch.randn(4, 128, generator=g), torch.randn(4, 128, generator=g)) > 1e-2


def _null_space_direction(weight: torch.Tensor, seed: int = 4) -> torch.Tensor:
    """A unit vector v (D,) with weight @ v = 0 for weight (r, D), r < D: a random vector minus its row-space part."""
    w = weight.detach().double()
    v = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = v - w.T @ torch.linalg.solve(w @ w.T, w @ v)
    return (v / v.norm()).float()


def test_rank_bottleneck_hides_z_moving_along_its_null_space():
    model = _model(z_rank=6, z_norm="none")
    first = model.velocity_net.z_proj[0]
    assert first.weight.shape == (6, 128) and first.bias is None
    v = _null_space_direction(first.weight)
    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(5))
    assert _max_change(model, z, z + 4.0 * v) < 1e-4
    row_space = first.weight[0] / first.weight[0].norm()  # a direction the bottleneck does read
    assert _max_change(model, z, z + 4.0 * row_space) > 1e-2
    # the full-width projection reads that null-space direction
    full = _model(z_norm="none")
    assert _max_change(full, z, z + 4.0 * v) > 1e-2


def test_rank_bottleneck_jacobian_has_rank_r_and_the_encoder_still_learns():
    model = _model(z_rank=5, z_norm="layer")
    z = torch.randn(128)
    jac = torch.autograd.functional.jacobian(lambda zz: model.velocity_net.z_proj(model.velocity_net.z_norm(zz)), z)
    assert jac.shape == (model.config.cond_dim, 128)
    assert int(torch.linalg.matrix_rank(jac, atol=1e-5)) == 5
    model.train()
    x = torch.randn(8, 3, 40)
    model.fit_normalizer(x)
    model.loss(x, generator=torch.Generator().manual_seed(0)).backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kw, match", [
    (dict(z_norm="batch"), "z_norm='batch'; expected one of"),
    (dict(z_rank=0), "z_rank must be >= 1"),
    (dict(z_rank=129), r"z_rank must be in \[1, z_dim=128\]"),
])
def test_bad_z_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        FlowFM(FlowFMConfig(preset="tiny", **kw))


def test_checkpoint_round_trip_keeps_the_z_settings(tmp_path):
    model = _model(z_norm="layer", z_rank=7)
    model.save(tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.config.z_norm == "layer" and loaded.config.z_rank == 7
    z = torch.randn(5, 128)
    assert torch.equal(_velocity(model, z), _velocity(loaded, z))


@pytest.mark.parametrize("config_cls", [FlowFMConfig, DiffusionConfig])
def test_configs_from_before_the_levers_load_as_the_unnormalised_generator_they_describe(config_cls):
    assert config_cls(preset="tiny").z_norm == "layer"  # the default for new models
    data = config_cls(preset="tiny").to_dict()
    del data["z_norm"], data["z_rank"]
    config = config_cls.from_dict(data)
    assert config.z_norm == "none" and config.z_rank is None
    assert config_cls.from_dict({**data, "z_norm": "layer"}).z_norm == "layer"


def test_a_checkpoint_without_z_norm_loads_the_plain_generator_it_was_trained_with(tmp_path):
    plain = _model(z_norm="none")
    plain.save(tmp_path / "old")
    doc = json.loads((tmp_path / "old" / "config.json").read_text())
    del doc["config"]["z_norm"]  # as written before the field existed (and before config checksums)
    doc.pop("config_sha256")
    (tmp_path / "old" / "config.json").write_text(json.dumps(doc))
    loaded = load_model(tmp_path / "old").eval()
    assert loaded.config.z_norm == "none" and isinstance(loaded.velocity_net.z_norm, torch.nn.Identity)
    z = torch.randn(5, 128) * 3 + 1
    assert torch.equal(_velocity(plain, z), _velocity(loaded, z))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3, 48)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "toy"
    save_folder(WindowDataset(x=x, pid=np.repeat(np.arange(4), 12), y=rng.integers(0, 2, size=48)), path)
    return path


def test_cli_pretrain_applies_the_z_flags_and_refuses_them_for_ssl(folder, tmp_path, capsys):
    from flowfm.cli import main

    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(folder), "--out", str(run), "--preset", "tiny", "--epochs", "1",
                 "--batch-size", "16", "--no-progress", "--z-norm", "layer", "--z-rank", "4"]) == 0
    model = load_model(run / "model")
    assert model.config.z_norm == "layer" and model.config.z_rank == 4
    assert model.velocity_net.z_proj[0].weight.shape == (4, model.z_dim)
    assert main(["pretrain", "--method", "ssl-wearables", "--data", str(folder), "--out", str(tmp_path / "s"),
                 "--z-rank", "4"]) == 2
    assert "--z-rank applies to --method flowfm / diffusion" in capsys.readouterr().err
