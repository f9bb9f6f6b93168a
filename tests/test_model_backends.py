"""Model level: FlowFM (and the diffusion baseline) train and sample under every backend the README lists.

For each of ``eager``, ``triton`` (on CPU: Triton's interpreter) and ``cuda`` (on CPU: the CUDA C++ kernels through
the CPU emulation of tests/cuda_emulation.py, driven by the real JIT launcher and the real ops) a tiny model runs
``loss()``, ``backward()`` and ``fast_sample()`` (Heun and RK4, guided), and the results must match an identical
eager model: loss, every parameter's gradient, samples. A spy on the dispatcher records which implementation
each op call really ran, and under ``cuda`` the emulation's launch log must show the kernels, so a run that
silently fell back to eager fails.
"""
from __future__ import annotations

import copy

import torch


import pytest  # noqa: E402

import flowfm  # noqa: E402
from flowfm.baselines import DiffusionConfig, DiffusionFM  # noqa: E402
from flowfm.cli import resolution_lines  # noqa: E402
from flowfm.config import FlowFMConfig  # noqa: E402
from flowfm_kernels import dispatch  # noqa: E402
from flowfm_kernels.cuda import launch, loader  # noqa: E402
from tests.cuda_emulation import emu_lib, emulated_module  # noqa: E402,F401 (emu_lib: a fixture)
from tests.numerics import assert_rel_rms  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ("eager", "triton", "cuda")  # README: backend="auto" | "eager" | "triton" | "cuda"
TRAIN_OPS = {"interpolate", "conv_block", "flow_matching_loss"}
SAMPLE_OPS = {"conv_block", "euler_step", "heun_correct", "rk4_combine", "guidance_combine"}
MODULE_OF = {"eager": ("reference",), "triton": ("triton",), "cuda": (".cuda",)}
# CUDA C++ kernels each phase must launch (emulation log)
TRAIN_KERNELS = {"gn_fwd_fused_kernel", "gn_bwd_rows_kernel", "gn_bwd_dh_kernel", "gn_bwd_params_partial_kernel",
                 "gn_bwd_params_finalize_kernel", "fm_loss_partial_kernel", "interpolate_kernel"}
SAMPLE_KERNELS = {"gn_fwd_fused_kernel", "euler_step_kernel", "heun_correct_kernel", "rk4_combine_kernel",
                  "guidance_combine_kernel"}
TOL = 1e-4  # fp32: the backends sum in other orders than eager (gradients through a whole U-Net)


class Spy:
    """Records (op, backend, implementation module) of every op call that went through the dispatcher."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, str, str]] = []
        real = dispatch.implementation

        def spying(op, backend, device):
            fn = real(op, backend, device)
            chosen = dispatch.resolve(op, backend, device)

            def call(*args, **kwargs):
                self.calls.append((op, chosen, fn.__module__))
                return fn(*args, **kwargs)

            return call

        monkeypatch.setattr(dispatch, "implementation", spying)

    def take(self) -> list[tuple[str, str, str]]:
        calls, self.calls = self.calls, []
        return calls


def use_backend(name: str, monkeypatch, request):
    """Make ``name`` runnable on DEVICE; returns the emulation's fake cupy (its launch log) for cuda on CPU."""
    if name == "triton" and dispatch._triton_import_error():
        pytest.skip(dispatch._triton_import_error())
    if DEVICE == "cuda":  # fp32 everywhere on a GPU, so that TOL holds: no tf32 in cuDNN's or Triton's convs
        monkeypatch.setenv("FLOWFM_TRITON_DOT_PRECISION", "ieee")
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    if name != "cuda":
        return None
    if DEVICE == "cuda":
        reason = loader.unavailable_reason()
        if reason:
            pytest.skip(f"cuda backend: {reason}")
        return None
    module, fake = emulated_module(request.getfixturevalue("emu_lib"))
    monkeypatch.setattr(loader, "get_module", lambda: module)
    monkeypatch.setattr(launch, "_ALLOW_CPU_TENSORS", True)
    real = dispatch.backend_unavailable_reason
    # only here, and only for the cuda backend: CPU tensors count as "CUDA" (the emulation runs them)
    monkeypatch.setattr(dispatch, "backend_unavailable_reason",
                        lambda backend, device="cpu": None if backend == "cuda" else real(backend, device))
    return fake


def check_calls(calls, backend: str, expected_ops: set[str]) -> None:
    assert calls, "no op went through the dispatcher"
    assert {op for op, _, _ in calls} >= expected_ops, sorted({op for op, _, _ in calls})
    for op, chosen, module in calls:
        assert chosen == backend, f"{op} ran {chosen!r}, not the requested {backend!r}"
        assert any(part in module for part in MODULE_OF[backend]), f"{op} ran {module}"


def check_kernels(fake, expected: set[str]) -> None:
    if fake is None:
        return
    launched = {launch.name.split("::")[1].split("<")[0] for launch in fake.launches}
    assert launched >= expected, f"missing CUDA kernel launches: {sorted(expected - launched)}"
    fake.launches.clear()


def tiny(model_cls=flowfm.FlowFM, config_cls=FlowFMConfig, **extra):
    """A one-level U-Net of 8 channels (the interpreter and the emulation are slow), with its zero-initialised
    FiLM and output layers randomised so that every conv block shapes the result."""
    torch.manual_seed(0)
    cfg = config_cls(preset="tiny", window=16, unet_channels=(8,), groups=4, cond_dim=16, p_uncond=0.1, **extra)
    model = model_cls(cfg, backend="eager").to(DEVICE)
    for name, p in model.velocity_net.named_parameters():
        if "out_conv" in name or "film" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model


def train_step(model):
    x = (torch.randn(3, 3, 16, generator=torch.Generator().manual_seed(1)) * 0.5).to(DEVICE)
    loss = model.loss(x, generator=torch.Generator(device=DEVICE).manual_seed(2))
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


STEPS = {"heun": 2, "rk4": 1, "ddim": 2}


def sample(model, method: str):
    """One guided sample (a doubled batch of 2 through the network per evaluation: conditional + null)."""
    z = torch.randn(1, model.z_dim, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    return flowfm.fast_sample(model, z=z, steps=STEPS[method], method=method, guidance=1.5,
                              generator=torch.Generator(device=DEVICE).manual_seed(4))


def compare_training(got, want, what: str) -> None:
    (loss, grads), (loss_ref, grads_ref) = got, want
    assert torch.isfinite(loss)
    assert_rel_rms(loss, loss_ref, 1e-5, f"{what} loss")
    assert set(grads) == set(grads_ref)
    nonzero = 0
    for name, g in grads_ref.items():
        if g.abs().max() > 0:
            nonzero += 1
            assert_rel_rms(grads[name], g, TOL, f"{what} gradient of {name}")
    assert nonzero > 10
    # the conv blocks' GroupNorm affine parameters get their gradients from the backend's backward
    assert any(".norm.weight" in n and grads_ref[n].abs().max() > 0 for n in grads_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flowfm_trains_and_samples_under_every_backend(backend, monkeypatch, request):
    fake = use_backend(backend, monkeypatch, request)
    eager = tiny()
    model = copy.deepcopy(eager).set_backend(backend)
    reference = train_step(eager), {m: sample(eager, m) for m in ("heun", "rk4")}
    spy = Spy(monkeypatch)

    compare_training(train_step(model), reference[0], backend)
    check_calls(spy.take(), backend, TRAIN_OPS)
    check_kernels(fake, TRAIN_KERNELS)

    for method in ("heun", "rk4"):
        x = sample(model, method)
        assert x.shape == (1, 3, 16) and torch.isfinite(x).all()
        assert_rel_rms(x, reference[1][method], TOL, f"{backend} {method} samples")
    check_calls(spy.take(), backend, SAMPLE_OPS)
    check_kernels(fake, SAMPLE_KERNELS)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_backend_from_the_environment(backend, monkeypatch, request):
    """FLOWFM_BACKEND=<backend> with FlowFM(cfg) (backend=None) routes every op of a training step the same way."""
    fake = use_backend(backend, monkeypatch, request)
    eager = tiny()
    model = copy.deepcopy(eager).set_backend(None)
    want = train_step(eager)
    monkeypatch.setenv("FLOWFM_BACKEND", backend)
    spy = Spy(monkeypatch)
    compare_training(train_step(model), want, f"FLOWFM_BACKEND={backend}")
    check_calls(spy.take(), backend, TRAIN_OPS)
    check_kernels(fake, TRAIN_KERNELS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_diffusion_baseline_under_every_backend(backend, monkeypatch, request):
    fake = use_backend(backend, monkeypatch, request)
    eager = tiny(DiffusionFM, DiffusionConfig, T=20)
    model = copy.deepcopy(eager).set_backend(backend)
    want_train, want_x = train_step(eager), sample(eager, "ddim")
    spy = Spy(monkeypatch)
    compare_training(train_step(model), want_train, f"diffusion {backend}")
    check_calls(spy.take(), backend, {"conv_block"})
    check_kernels(fake, {"gn_fwd_fused_kernel", "gn_bwd_rows_kernel", "gn_bwd_params_partial_kernel"})
    assert_rel_rms(sample(model, "ddim"), want_x, TOL, f"diffusion {backend} ddim samples")
    check_calls(spy.take(), backend, {"conv_block", "guidance_combine"})
    check_kernels(fake, {"gn_fwd_fused_kernel", "guidance_combine_kernel"})


def test_a_silent_eager_fallback_is_caught(monkeypatch):
    """The checks above fail for a model that asked for triton but ran eager."""
    eager = tiny()
    spy = Spy(monkeypatch)
    train_step(eager)
    with pytest.raises(AssertionError, match="not the requested 'triton'"):
        check_calls(spy.take(), "triton", TRAIN_OPS)


def test_every_model_op_resolves_under_every_backend_on_a_gpu(monkeypatch):
    """On a CUDA device with every backend available, each op the model calls resolves to exactly the requested
    backend (no op lacks one, so backend='cuda' never raises 'has no cuda implementation')."""
    monkeypatch.setattr(dispatch, "backend_unavailable_reason", lambda backend, device="cpu": None)
    for op in sorted(TRAIN_OPS | SAMPLE_OPS):
        for backend in BACKENDS:
            res = dispatch.explain(op, backend, "cuda")
            assert res.backend == backend and res.error is None, res
        assert dispatch.explain(op, "auto", "cuda").backend == dispatch.cuda_preference(op)[0]
    note = dispatch.explain("conv_block", "cuda", "cuda").note
    assert note and "cuDNN" in note and "CUDA C++" in note
    lines = "\n".join(resolution_lines("cuda"))
    assert "conv_block under cuda: conv by torch F.conv1d (cuDNN)" in lines
    row = next(line for line in lines.splitlines() if line.strip().startswith("conv_block "))
    assert row.split()[1:5] == ["triton", "eager", "triton", "cuda"]
    assert "auto (conv_block): first available of triton > cuda > eager" in lines


def test_info_shows_the_fallback_reasons_on_a_gpu_without_the_cuda_module(monkeypatch):
    real = dispatch.backend_unavailable_reason
    monkeypatch.setattr(dispatch, "backend_unavailable_reason",
                        lambda backend, device="cpu": "the CUDA C++ module is not built (test)" if backend == "cuda"
                        else (None if torch.device(device).type == "cuda" else real(backend, device)))
    lines = resolution_lines("cuda")
    rows = {line.split()[0]: line.split()[1:5] for line in lines[2:2 + len(dispatch.registered_ops())]}
    assert rows["euler_step"] == ["triton", "eager", "triton", "-"]
    assert rows["conv_block"] == ["triton", "eager", "triton", "-"]
    text = "\n".join(lines)
    assert "cuda (all ops): unavailable: the CUDA C++ module is not built (test)" in text
    assert "unavailable: cuda (the CUDA C++ module is not built (test))" in text  # auto's skipped reason
