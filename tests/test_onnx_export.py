"""ONNX export (flowfm.export) and the ORT runner against the eager torch model."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from flowfm.config import FlowFMConfig
from flowfm.export.onnx_export import export_onnx
from flowfm.export.runner import OrtRunner
from flowfm.model import FlowFM
from flowfm.sampling import generate


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = FlowFM(FlowFMConfig(preset="tiny", window=300), backend="eager")
    # non-trivial weights everywhere (the output conv and FiLM start at zero)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        m.normalizer.mean.copy_(torch.tensor([0.1, -0.2, 0.9]))
        m.normalizer.std.copy_(torch.tensor([0.3, 0.5, 0.7]))
    return m.eval()


@pytest.fixture(scope="module")
def runners(model, tmp_path_factory):
    return {n: OrtRunner(export_onnx(model, tmp_path_factory.mktemp(f"onnx{n}"), length=n), threads=1)
            for n in (300, 600)}


@pytest.fixture(scope="module")
def runner(runners):
    return runners[300]


@pytest.mark.parametrize("length", [300, 600])
def test_encoder_and_velocity_match_eager(model, runners, length):
    runner = runners[length]
    g = torch.Generator().manual_seed(length)
    x = torch.randn(3, 3, length, generator=g)
    t, z = torch.rand(3, generator=g), torch.randn(3, model.z_dim, generator=g)
    with torch.no_grad():
        z_ref = model.encode(x).numpy()
        v_ref = model.velocity(x, t, z).numpy()
    np.testing.assert_allclose(runner.encode(x.numpy()), z_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runner.velocity(x.numpy(), t.numpy(), z.numpy()), v_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length,method,guidance", [(300, "heun", 1.0), (600, "heun", 1.0),
                                                    (300, "euler", 1.5), (600, "midpoint", 1.0)])
def test_sample_matches_eager(model, runners, length, method, guidance):
    runner = runners[length]
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 3, length, generator=g)
    z = torch.randn(2, model.z_dim, generator=g)
    with torch.inference_mode():
        ref = model.normalizer.denormalize(generate(model, x0, z, 10, method, guidance, "eager")).numpy()
    out = runner.sample(z.numpy(), steps=10, method=method, guidance=guidance, x0=x0.numpy())
    assert np.abs(ref).max() > 0.1  # the comparison is not between two near-zero arrays
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_fixed_batch_export_rejects_other_batches(model, tmp_path):
    r = OrtRunner(export_onnx(model, tmp_path, batch=2), threads=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 300)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(r.encode(x), model.encode(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="fixed batch 2"):
        r.encode(x[:1])
    with pytest.raises(ValueError, match="length 300"):
        r.encode(x[..., :200])


def test_runner_errors(runner, tmp_path):
    with pytest.raises(ValueError, match=r"shape \(B, 3, L\)"):
        runner.encode(np.zeros((1, 2, 300), np.float32))
    with pytest.raises(ValueError, match="unknown for the ONNX runner"):
        runner.sample(np.zeros((1, runner.meta["z_dim"]), np.float32), method="rk4")
    with pytest.raises(FileNotFoundError, match="flowfm export"):
        OrtRunner(tmp_path)


def test_cli_export_then_sample(model, tmp_path):
    from flowfm.cli import main

    model.save(tmp_path / "ckpt")
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "onnx")]) == 0
    r = OrtRunner(tmp_path / "onnx", threads=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 300)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(r.encode(x), model.encode(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
