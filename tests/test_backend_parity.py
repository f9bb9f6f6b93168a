"""Model level: training and sampling through the Triton backend agree with eager (interpreter on CPU).

On a GPU both sides run in true fp32: the Triton convs with ``tl.dot`` in IEEE precision and the eager cuDNN
convs / cuBLAS matmuls with TF32 off (``no_tf32``), so the fp32 tolerances below compare like with like.
"""
import copy

import pytest
import torch

pytest.importorskip("triton")

import flowfm  # noqa: E402
from flowfm.config import FlowFMConfig  # noqa: E402
from numerics import assert_rel_rms, no_tf32  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def true_fp32(monkeypatch):
    monkeypatch.setenv("FLOWFM_TRITON_DOT_PRECISION", "ieee")
    with no_tf32():
        yield


def _pair():
    torch.manual_seed(0)
    # a minimal U-Net (one level, 8 channels): the Triton interpreter runs every program instance in Python
    # p_uncond > 0: a dropout-trained null vector, so the guided sampling below has its null branch
    cfg = FlowFMConfig(preset="tiny", window=16, unet_channels=(8,), groups=4, cond_dim=16, p_uncond=0.1)
    eager = flowfm.FlowFM(cfg, backend="eager").to(DEVICE)
    for name, p in eager.velocity_net.named_parameters():  # zero-initialised layers would hide the conv blocks
        if "out_conv" in name or "film" in name:
            torch.nn.init.normal_(p, std=0.05)
    triton_model = copy.deepcopy(eager).set_backend("triton")
    return eager, triton_model


def _train(model, steps=20, batch=4):
    """SGD steps on a fixed data/noise stream; returns per-step losses and the first step's gradients."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    data = torch.Generator().manual_seed(1)
    losses, first_grads = [], None
    for step in range(steps):
        x = (torch.randn(batch, 3, 16, generator=data) * 0.5).to(DEVICE)
        loss = model.loss(x, generator=torch.Generator(device=DEVICE).manual_seed(step))
        opt.zero_grad()
        loss.backward()
        if step == 0:
            first_grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64), first_grads


# 20 steps on a GPU; 8 under the Triton interpreter, where each step of the Triton model costs seconds in Python
TRAINING_STEPS = 20 if DEVICE == "cuda" else 8


def test_training_steps_agree():
    eager, tri = _pair()
    # Training is chaotic at this scale (BatchNorm over tiny batches): a 1e-7 relative perturbation of the
    # weights alone grows to ~1e-3 loss differences within 20 steps. Measure that floor with eager itself.
    perturbed = copy.deepcopy(eager)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.mul_(1 + 1e-7 * torch.randn_like(p))
    losses_e, grads_e = _train(eager, TRAINING_STEPS)
    losses_t, grads_t = _train(tri, TRAINING_STEPS)
    losses_p, _ = _train(perturbed, TRAINING_STEPS)

    for (name, _), g_e, g_t in zip(eager.named_parameters(), grads_e, grads_t):
        if g_e.abs().max() > 0:
            assert_rel_rms(g_t, g_e, 1e-4, f"first-step gradient of {name}")
    assert losses_e[0] != losses_e[-1]
    rel_t = ((losses_t - losses_e).abs() / losses_e.abs())
    rel_p = ((losses_p - losses_e).abs() / losses_e.abs())
    assert rel_t[0] <= 1e-5, rel_t[0]
    assert rel_t.max() <= 10 * rel_p.max() + 1e-5, (rel_t.tolist(), rel_p.tolist())


@pytest.mark.parametrize("method, guidance", [("heun", 1.0), ("euler", 2.0), ("rk4", 1.5)])
def test_sampling_agrees(method, guidance):
    eager, tri = _pair()
    z = torch.randn(2, eager.z_dim, device=DEVICE)
    kw = dict(z=z, steps=3, method=method, guidance=guidance)
    a = flowfm.fast_sample(eager, generator=torch.Generator(device=DEVICE).manual_seed(0), **kw)
    b = flowfm.fast_sample(tri, generator=torch.Generator(device=DEVICE).manual_seed(0), **kw)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
