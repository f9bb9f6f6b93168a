"""CUDA-graph replay against eager on real CUDA graphs (@pytest.mark.gpu; skipped without a GPU): every method,
batch changes, streams, eviction, freed memory, training steps seen by replay, every kernel backend, bf16.
"""
import gc

import pytest
import torch
from torch import nn

import flowfm
from flowfm.sampling import generate
from flowfm_kernels import graphs
from tests.cuda_graph_fakes import gen, tiny_model
from tests.cuda_graph_fakes import fresh_cache  # noqa: F401 (pytest fixtures)


def _cuda_model(seed=0, window=64, backend=None):
    return tiny_model(seed, window).cuda().set_backend(backend)


def _pair(m, seed=0, **kw):
    """(graph, eager) results of the same call with the same noise."""
    graph = flowfm.fast_sample(m, generator=gen(seed, "cuda"), cuda_graph=True, **kw)
    eager = flowfm.fast_sample(m, generator=gen(seed, "cuda"), cuda_graph=False, **kw)
    return graph, eager


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_gpu_replay_equals_eager(method, guidance):
    m = _cuda_model()
    z = torch.randn(5, m.z_dim, device="cuda")
    graph, eager = _pair(m, z=z, steps=4, method=method, guidance=guidance)  # first call: capture + replay
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)
    assert graphs.stats()["captures"] == 1
    graph, eager = _pair(m, seed=1, z=z, steps=4, method=method, guidance=guidance)
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)
    s = graphs.stats()
    assert (s["captures"], s["hits"]) == (1, 1)
    assert s["last_capture"]["warmup_s"] > 0 and s["last_capture"]["capture_s"] > 0


@pytest.mark.gpu
def test_gpu_auto_is_default_and_batch_change_captures():
    m = _cuda_model()
    flowfm.fast_sample(m, n=4, steps=2)
    flowfm.fast_sample(m, n=4, steps=2)
    assert (graphs.stats()["captures"], graphs.stats()["hits"]) == (1, 1)
    flowfm.fast_sample(m, n=6, steps=2)
    assert graphs.stats()["captures"] == 2 and graphs.stats()["entries"] == 2


@pytest.mark.gpu
def test_gpu_env_off(monkeypatch):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH", "0")
    flowfm.fast_sample(_cuda_model(), n=2, steps=2)
    assert graphs.stats()["captures"] == 0


@pytest.mark.gpu
def test_gpu_outputs_are_independent_clones():
    m = _cuda_model()
    a = flowfm.fast_sample(m, n=3, steps=2, generator=gen(0, "cuda"))
    keep = a.clone()
    b = flowfm.fast_sample(m, n=3, steps=2, generator=gen(1, "cuda"))
    assert torch.equal(a, keep) and not torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_replay_on_another_stream():
    m = _cuda_model()
    z = torch.randn(3, m.z_dim, device="cuda")
    flowfm.fast_sample(m, z=z, steps=2)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = flowfm.fast_sample(m, z=z, steps=2, generator=gen(3, "cuda"))
    torch.cuda.current_stream().wait_stream(side)
    eager = flowfm.fast_sample(m, z=z, steps=2, generator=gen(3, "cuda"), cuda_graph=False)
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
    assert graphs.stats()["hits"] == 1


@pytest.mark.gpu
def test_gpu_cache_bound_evicts(monkeypatch):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH_CACHE", "2")
    m = _cuda_model()
    for n in (1, 2, 3):
        flowfm.fast_sample(m, n=n, steps=2)
    s = graphs.stats()
    assert (s["captures"], s["evictions"], s["entries"]) == (3, 1, 2)
    graph, eager = _pair(m, n=1, steps=2)  # the evicted key recaptures and is still right
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_gpu_clear_frees_memory():
    m = _cuda_model(window=256)
    graphs.clear()
    torch.cuda.synchronize()
    base_alloc = torch.cuda.memory_allocated()
    flowfm.fast_sample(m, n=512, steps=2, method="heun", guidance=2.0)
    flowfm.fast_sample(m, n=256, steps=2)
    torch.cuda.synchronize()
    held_alloc, held_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    assert held_alloc > base_alloc  # static inputs and outputs of two graphs
    graphs.clear()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() < held_alloc
    assert torch.cuda.memory_allocated() <= base_alloc + 1024
    assert torch.cuda.memory_reserved() < held_reserved  # the graphs' pool went back to the driver
    assert graphs.stats()["entries"] == 0


@pytest.mark.gpu
def test_gpu_collected_model_frees_its_graphs():
    m = _cuda_model()
    flowfm.fast_sample(m, n=64, steps=2)
    assert graphs.stats()["entries"] == 1
    del m
    gc.collect()
    assert graphs.stats()["entries"] == 0  # nothing in the cache keeps the model alive


@pytest.mark.gpu
def test_gpu_training_step_is_seen_by_replay():
    m = _cuda_model(seed=1)
    z = torch.randn(4, m.z_dim, device="cuda")
    before = flowfm.fast_sample(m, z=z, steps=3, generator=gen(0, "cuda"))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.train()
    m.loss(torch.randn(8, 3, 64, device="cuda"), generator=gen(1, "cuda")).backward()
    opt.step()
    m.eval()
    graph, eager = _pair(m, z=z, steps=3)
    s = graphs.stats()
    assert (s["captures"], s["hits"]) == (1, 1)  # in-place update: same graph
    assert not torch.allclose(before, graph)
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_gpu_replaced_parameter_recaptures():
    m = _cuda_model(seed=2)
    z = torch.randn(2, m.z_dim, device="cuda")
    flowfm.fast_sample(m, z=z, steps=2)
    conv = m.velocity_net.out_conv
    conv.weight = nn.Parameter(torch.randn_like(conv.weight) * 0.1)
    graph, eager = _pair(m, z=z, steps=2)
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)
    s = graphs.stats()
    assert (s["captures"], s["entries"]) == (2, 1)


def _require_backend(name):
    reason = flowfm_kernels_available(name)
    if reason:
        pytest.skip(f"backend {name!r} unavailable: {reason}")


def flowfm_kernels_available(name):
    import flowfm_kernels

    return flowfm_kernels.available_backends("cuda")[name]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["eager", "triton", "cuda"])
@pytest.mark.parametrize("method", ["heun", "rk4"])
def test_gpu_backends_capture(backend, method):
    _require_backend(backend)
    m = _cuda_model(backend=None if backend == "cuda" else backend)  # conv blocks: eager/triton only
    z = torch.randn(3, m.z_dim, device="cuda")
    graph, eager = _pair(m, z=z, steps=3, method=method, guidance=2.0, backend=backend)
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)
    graph, eager = _pair(m, seed=1, z=z, steps=3, method=method, guidance=2.0, backend=backend)
    torch.testing.assert_close(graph, eager, rtol=1e-5, atol=1e-5)
    assert (graphs.stats()["captures"], graphs.stats()["hits"]) == (1, 1)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", [None, "eager", "triton"])
def test_gpu_bf16_model(backend):
    if backend == "triton":
        _require_backend("triton")
    m = _cuda_model(seed=3, backend=backend).to(torch.bfloat16)
    z = torch.randn(4, m.z_dim, device="cuda")
    graph, eager = _pair(m, z=z, steps=3, method="heun", guidance=2.0)
    assert graph.dtype == torch.float32 and torch.isfinite(graph).all()
    torch.testing.assert_close(graph, eager, rtol=1e-3, atol=1e-3)
    assert graphs.stats()["captures"] == 1


@pytest.mark.gpu
def test_gpu_explicit_true_in_training_mode_raises():
    m = _cuda_model().train()
    with pytest.raises(ValueError, match="training mode"):
        generate(m, torch.randn(2, 3, 64, device="cuda"), torch.randn(2, m.z_dim, device="cuda"), 2, "euler", 1.0,
                 None, cuda_graph=True)


@pytest.mark.gpu
def test_gpu_fast_sample_never_synchronises_after_capture():
    """The latency path: once the graph is captured, a conditioned fast_sample call issues no host-device sync
    (torch's sync debug mode turns any synchronising call into an error)."""
    m = _cuda_model()
    z = torch.randn(4, m.z_dim, device="cuda")
    flowfm.fast_sample(m, z=z, steps=2, generator=gen(0, "cuda"))  # capture (allowed to synchronise)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = flowfm.fast_sample(m, z=z, steps=2, generator=gen(1, "cuda"))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert out.shape == (4, 3, 64) and torch.isfinite(out).all()
