"""Unconditional sampling without condition dropout: the null-vector fit and the representation bank."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import flowfm
from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM
from flowfm.data.digest import sha256_file as _sha256
from flowfm.config import FlowFMConfig
from flowfm.training import TrainConfig, pretrain
from flowfm.training.null_fit import fit_null_vector, null_fit_needed
from flowfm.training.representation_bank import fill_representation_bank

L = 48


def _windows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(L) / 30.0
    x = np.sin(2 * np.pi * rng.uniform(0.5, 3.0, (n, 1, 1)) * t) * rng.uniform(0.2, 1.0, (n, 3, 1))
    return (x + 0.05 * rng.standard_normal((n, 3, L))).astype(np.float32)


def _model(p_uncond=0.0, cls=flowfm.FlowFM, config_cls=FlowFMConfig, **kw):
    torch.manual_seed(0)
    return cls(config_cls(preset="tiny", window=L, p_uncond=p_uncond, **kw)).fit_normalizer(_windows())


def _conditioned(model):
    """The model with every weight perturbed, so the field depends on z (a fresh U-Net's FiLM starts at zero)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _fixed_null_loss(model, x, null, seed=3):
    """The all-null loss at ``null`` on fixed noise, times and views (the objective the fit minimises)."""
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        saved = model.null_z.detach().clone()
        model.null_z.copy_(null)
        model.eval()
        loss = model.loss(xt, drop=torch.ones(len(x), dtype=torch.bool), view=xt, generator=g).item()
        model.null_z.copy_(saved)
    return loss


@pytest.mark.parametrize("cls,config_cls", [(flowfm.FlowFM, FlowFMConfig), (DiffusionFM, DiffusionConfig)])
def test_null_fit_changes_only_the_null_vector_and_lowers_its_loss(cls, config_cls):
    extra = dict(T=50, beta_start=1e-3, beta_end=0.05) if cls is DiffusionFM else {}
    model = _conditioned(_model(cls=cls, config_cls=config_cls, **extra))
    model.train()
    x = _windows(64, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert null_fit_needed(model)
    record = fit_null_vector(model, x, steps=60, batch_size=32, lr=0.05, seed=2, init_windows=64)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["null_z"]                         # BatchNorm statistics and weights untouched
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not null_fit_needed(model) and model.config.extra["null_fit"] == record
    assert record["steps"] == 60 and np.isfinite([record["loss_start"], record["loss_end"]]).all()
    held_out = _windows(256, seed=9)
    zero = torch.zeros(model.z_dim)
    assert _fixed_null_loss(model, held_out, model.null_z.detach()) < _fixed_null_loss(model, held_out, zero)


def test_null_fit_starts_from_the_mean_representation():
    model = _model()
    x = _windows(30, seed=4)
    fit_null_vector(model, x, steps=1, lr=1e-12, init_windows=1000)
    model.eval()
    with torch.no_grad():
        mean_z = model.encode(torch.from_numpy(x)).mean(0)
    torch.testing.assert_close(model.null_z.detach(), mean_z, rtol=1e-5, atol=1e-6)


def test_null_fit_needed_only_without_dropout_and_without_a_record():
    assert null_fit_needed(_model(0.0))
    assert not null_fit_needed(_model(0.1))
    from flowfm.baselines.ssl_wearables import SSLWearables
    assert not null_fit_needed(SSLWearables())


@pytest.mark.parametrize("kwargs,message", [(dict(steps=0), "steps"), (dict(lr=0.0), "lr"),
                                            (dict(batch_size=0), "batch_size")])
def test_null_fit_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_null_vector(_model(), _windows(8), **{"steps": 5, **kwargs})


def test_bank_rows_are_representations_of_distinct_training_windows():
    model = _model()
    x = _windows(50, seed=5)
    model.train()
    assert fill_representation_bank(model, x, size=20, seed=1, batch_size=7) == 20
    assert model.training
    model.eval()
    with torch.no_grad():
        all_z = model.encode(torch.from_numpy(x))
    dist = torch.cdist(model.z_bank, all_z)
    nearest = dist.argmin(1)
    assert torch.allclose(dist.min(1).values, torch.zeros(20), atol=1e-4)
    assert len(set(nearest.tolist())) == 20
    other = _model()
    fill_representation_bank(other, x, size=20, seed=1, batch_size=50)
    torch.testing.assert_close(other.z_bank, model.z_bank)   # seeded draw, independent of the batching
    assert fill_representation_bank(model, x, size=500) == 50  # capped at N
    assert fill_representation_bank(model, x, size=0) == 0 and model.z_bank.shape == (0, model.z_dim)


def test_set_z_bank_rejects_wrong_shapes_and_non_finite_values():
    model = _model()
    with pytest.raises(ValueError, match=r"\(K, "):
        model.set_z_bank(torch.zeros(3, model.z_dim + 1))
    with pytest.raises(ValueError, match="NaN"):
        model.set_z_bank(torch.full((2, model.z_dim), float("nan")))


def test_the_bank_round_trips_and_old_checkpoints_load_with_an_empty_one(tmp_path):
    model = _model()
    fill_representation_bank(model, _windows(30), size=13)
    model.save(tmp_path / "m")
    loaded = flowfm.FlowFM.load(tmp_path / "m")
    assert torch.equal(loaded.z_bank, model.z_bank)
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    del state["z_bank"]
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    doc["weights_sha256"] = _sha256(tmp_path / "m" / "model.safetensors")
    doc.pop("config_sha256")  # files written before the bank carried no config checksum either
    (tmp_path / "m" / "config.json").write_text(json.dumps(doc))
    old = flowfm.FlowFM.load(tmp_path / "m")
    assert old.z_bank.shape == (0, model.z_dim)
    torch.testing.assert_close(old.encoder(torch.from_numpy(_windows(4))), loaded.encoder(torch.from_numpy(_windows(4))))


def test_unconditional_sampling_draws_its_conditions_from_the_bank():
    model = _model()
    bank = torch.randn(5, model.z_dim)
    model.set_z_bank(bank)
    g = torch.Generator().manual_seed(11)
    x = flowfm.fast_sample(model, n=6, steps=3, method="euler", generator=g)
    ref_g = torch.Generator().manual_seed(11)
    rows = torch.randint(5, (6,), generator=ref_g)
    expected = flowfm.fast_sample(model, z=bank[rows], steps=3, method="euler", generator=ref_g)
    torch.testing.assert_close(x, expected)
    assert len(set(rows.tolist())) > 1


def test_prior_choice_and_its_errors():
    model = _model(0.0)
    with pytest.raises(ValueError, match="prior='bank' needs a representation bank"):
        flowfm.fast_sample(model, n=2, steps=2, prior="bank")
    with pytest.raises(ValueError, match="never fitted"):
        flowfm.fast_sample(model, n=2, steps=2)                   # auto: no bank, unfitted null
    with pytest.raises(ValueError, match="prior="):
        flowfm.fast_sample(model, n=2, steps=2, prior="gaussian")
    fill_representation_bank(model, _windows(20), size=8)
    assert flowfm.fast_sample(model, n=2, steps=2).shape == (2, 3, L)   # auto: the bank
    z = torch.randn(2, model.z_dim)
    with pytest.raises(ValueError, match="guidance"):
        flowfm.fast_sample(model, z=z, steps=2, guidance=2.0)
    fit_null_vector(model, _windows(20), steps=2)
    assert flowfm.fast_sample(model, z=z, steps=2, guidance=2.0).shape == (2, 3, L)
    dropout = _model(0.1)
    fill_representation_bank(dropout, _windows(20), size=8)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    torch.testing.assert_close(flowfm.fast_sample(dropout, n=3, steps=2, prior="null", generator=g1),
                               flowfm.fast_sample(dropout, z=dropout.null_z.detach().expand(3, -1), steps=2,
                                                  generator=g2))


@pytest.mark.parametrize("p_uncond", [0.0, 0.1])
def test_pretraining_stores_the_bank_and_fits_the_null_only_without_dropout(tmp_path, p_uncond):
    x = _windows(64)
    model = _model(p_uncond)
    pretrain(model, x, TrainConfig(epochs=1, batch_size=32, warmup_steps=1, null_fit_steps=3, z_bank_size=50),
             tmp_path, progress=False)
    saved = flowfm.FlowFM.load(tmp_path / "model")
    assert saved.z_bank.shape == (50, saved.z_dim)
    assert ("null_fit" in saved.config.extra) == (p_uncond == 0.0)
    assert saved.config.extra.get("null_fit", {"steps": 3})["steps"] == 3
    z = torch.randn(2, saved.z_dim)
    assert torch.isfinite(flowfm.fast_sample(saved, z=z, steps=2, guidance=1.5)).all()


def test_pretraining_can_skip_both(tmp_path):
    model = _model(0.0)
    pretrain(model, _windows(64), TrainConfig(epochs=1, batch_size=32, warmup_steps=1, null_fit_steps=0,
                                              z_bank_size=0), tmp_path, progress=False)
    saved = flowfm.FlowFM.load(tmp_path / "model")
    assert saved.z_bank.shape[0] == 0 and null_fit_needed(saved)
    with pytest.raises(ValueError):
        TrainConfig(null_fit_steps=-1)
