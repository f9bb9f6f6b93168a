"""The CUDA-graph cache (flowfm_kernels.graphs) on CPU, through fast_sample with a fake runtime: keys, LRU eviction,
clear(), stats(), stale-weight recapture, collected models, capture-failure fallback, private static buffers.
"""
import warnings

import pytest
import torch
from torch import nn

import flowfm
from flowfm.sampling import generate
from flowfm_kernels import graphs
from tests.cuda_graph_fakes import gen, tiny_model
from tests.cuda_graph_fakes import fake, model, fresh_cache  # noqa: F401 (pytest fixtures)


def test_first_call_captures_and_matches_eager_then_hits(fake, model):
    z = torch.randn(3, model.z_dim)
    kw = dict(z=z, steps=3, method="heun", guidance=2.0)
    eager = flowfm.fast_sample(model, generator=gen(1), cuda_graph=False, **kw)
    first = flowfm.fast_sample(model, generator=gen(1), **kw)
    torch.testing.assert_close(first, eager, rtol=0, atol=0)
    s = graphs.stats()
    assert (s["captures"], s["hits"], s["entries"]) == (1, 0, 1)
    assert fake.warmup_runs == graphs.WARMUP_ITERS and len(fake.graphs) == 1
    assert s["last_capture"]["warmup_s"] >= 0 and s["last_capture"]["first_call_s"] >= s["last_capture"]["warmup_s"]
    assert s["capture_s_total"] > 0
    # new noise and new conditions go through the static buffers
    z2 = torch.randn(3, model.z_dim)
    eager2 = flowfm.fast_sample(model, z=z2, steps=3, method="heun", guidance=2.0, generator=gen(2),
                                cuda_graph=False)
    second = flowfm.fast_sample(model, z=z2, steps=3, method="heun", guidance=2.0, generator=gen(2))
    torch.testing.assert_close(second, eager2, rtol=0, atol=0)
    s = graphs.stats()
    assert (s["captures"], s["hits"], s["entries"]) == (1, 1, 1)
    assert fake.warmup_runs == graphs.WARMUP_ITERS and fake.graphs[0].replays == 2
    # outputs are clones: the first result did not change when the graph ran again
    torch.testing.assert_close(first, eager, rtol=0, atol=0)
    assert first.data_ptr() != second.data_ptr()


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_every_method_matches_eager(fake, model, method, guidance):
    z = torch.randn(2, model.z_dim)
    for seed in (0, 1):
        kw = dict(z=z, steps=2, method=method, guidance=guidance, generator=gen(seed))
        got = flowfm.fast_sample(model, **kw)
        kw["generator"] = gen(seed)
        torch.testing.assert_close(got, flowfm.fast_sample(model, cuda_graph=False, **kw), rtol=0, atol=0)
    assert graphs.stats()["captures"] == 1 and graphs.stats()["hits"] == 1


def test_key_separates_configurations(fake, model, monkeypatch):
    z = torch.randn(2, model.z_dim)
    flowfm.fast_sample(model, z=z, steps=2)
    flowfm.fast_sample(model, z=z, steps=2)
    assert graphs.stats()["captures"] == 1
    variants = [dict(z=z, steps=3), dict(z=z, steps=2, method="euler"), dict(z=z, steps=2, guidance=2.0),
                dict(z=torch.randn(4, model.z_dim), steps=2), dict(z=z, steps=2, length=64),
                dict(z=z, steps=2, backend="eager")]
    for i, kw in enumerate(variants, start=2):
        flowfm.fast_sample(model, **kw)
        assert graphs.stats()["captures"] == i, kw
    monkeypatch.setenv("FLOWFM_TRITON_DOT_PRECISION", "ieee")  # kernel-affecting environment is in the key
    flowfm.fast_sample(model, z=z, steps=2)
    assert graphs.stats()["captures"] == len(variants) + 2
    assert graphs.stats()["hits"] == 1


def test_conditions_are_inputs_not_constants(fake, model):
    """Unconditional (null vector) and conditional calls of the same shape share one graph: z is a static input."""
    z = torch.randn(2, model.z_dim)
    a = flowfm.fast_sample(model, z=z, steps=2, generator=gen(0))
    b = flowfm.fast_sample(model, n=2, steps=2, generator=gen(0))
    s = graphs.stats()
    assert (s["captures"], s["hits"]) == (1, 1)
    torch.testing.assert_close(b, flowfm.fast_sample(model, n=2, steps=2, generator=gen(0), cuda_graph=False),
                               rtol=0, atol=0)
    assert not torch.equal(a, b)


def test_lru_bound_evicts_least_recently_used(fake, model, monkeypatch):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH_CACHE", "2")
    zs = {b: torch.randn(b, model.z_dim) for b in (1, 2, 3)}
    flowfm.fast_sample(model, z=zs[1], steps=1)  # A
    flowfm.fast_sample(model, z=zs[2], steps=1)  # B
    flowfm.fast_sample(model, z=zs[1], steps=1)  # A hit: B is now the least recently used
    flowfm.fast_sample(model, z=zs[3], steps=1)  # C evicts B
    s = graphs.stats()
    assert (s["captures"], s["hits"], s["evictions"], s["entries"], s["max_entries"]) == (3, 1, 1, 2, 2)
    graph_a, graph_b, graph_c = fake.graphs
    assert graph_b.released and not graph_a.released and not graph_c.released
    flowfm.fast_sample(model, z=zs[1], steps=1)  # A still cached
    assert graphs.stats()["hits"] == 2
    flowfm.fast_sample(model, z=zs[2], steps=1)  # B again: recaptured, evicting C
    s = graphs.stats()
    assert (s["captures"], s["evictions"], s["entries"]) == (4, 2, 2) and graph_c.released
    assert fake.pools == 1  # one shared pool per device while graphs live


def test_clear_frees_everything_and_resets_stats(fake, model):
    z = torch.randn(2, model.z_dim)
    flowfm.fast_sample(model, z=z, steps=1)
    flowfm.fast_sample(model, z=z, steps=2)
    assert graphs.stats()["entries"] == 2
    emptied = fake.emptied
    graphs.clear()
    assert all(g.released for g in fake.graphs)
    assert fake.emptied == emptied + 1
    s = graphs.stats()
    assert (s["entries"], s["captures"], s["hits"], s["last_capture"]) == (0, 0, 0, None)
    assert not graphs.CACHE.pools and not graphs.CACHE.entries
    flowfm.fast_sample(model, z=z, steps=1)
    assert graphs.stats()["captures"] == 1 and fake.pools == 2  # a fresh pool after clear()
    graphs.reset_stats()
    assert graphs.stats()["captures"] == 0 and graphs.stats()["entries"] == 1


def test_in_place_weight_updates_are_replayed_without_recapture(fake):
    m = tiny_model(seed=3)
    z = torch.randn(2, m.z_dim)
    before = flowfm.fast_sample(m, z=z, steps=2, generator=gen(0))
    # one optimizer step (in place) and an in-place load_state_dict
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.loss(torch.randn(4, 3, 48), generator=gen(5)).backward()
    opt.step()
    m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()})
    after = flowfm.fast_sample(m, z=z, steps=2, generator=gen(0))
    assert (graphs.stats()["captures"], graphs.stats()["hits"]) == (1, 1)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, flowfm.fast_sample(m, z=z, steps=2, generator=gen(0), cuda_graph=False),
                               rtol=0, atol=0)


def test_replaced_parameters_recapture_and_drop_stale_graphs(fake):
    m = tiny_model(seed=4)
    z = torch.randn(2, m.z_dim)
    flowfm.fast_sample(m, z=z, steps=2)
    conv = m.velocity_net.out_conv
    conv.weight = nn.Parameter(torch.randn_like(conv.weight) * 0.1)
    got = flowfm.fast_sample(m, z=z, steps=2, generator=gen(0))
    s = graphs.stats()
    assert (s["captures"], s["hits"], s["entries"]) == (2, 0, 1)  # the stale graph went with the old weights
    assert fake.graphs[0].released
    torch.testing.assert_close(got, flowfm.fast_sample(m, z=z, steps=2, generator=gen(0), cuda_graph=False),
                               rtol=0, atol=0)
    conv.bias.data = conv.bias.data + 1.0  # a new tensor behind the same Parameter
    flowfm.fast_sample(m, z=z, steps=2)
    assert graphs.stats()["captures"] == 3
    m.velocity_net.out_conv = nn.Conv1d(conv.in_channels, conv.out_channels, 3, padding=1)  # a new submodule
    flowfm.fast_sample(m, z=z, steps=2)
    assert graphs.stats()["captures"] == 4 and graphs.stats()["entries"] == 1


def test_graphs_of_a_collected_model_are_dropped(fake):
    """The fake graph keeps the captured function (hence the model) alive, so the model's finalizer is fired by
    hand here; test_gpu_collected_model_frees_its_graphs checks the real collection."""
    m = tiny_model(seed=5)
    other = tiny_model(seed=6)
    flowfm.fast_sample(m, n=2, steps=1)
    flowfm.fast_sample(other, n=2, steps=1)
    assert graphs.stats()["entries"] == 2
    graph = fake.graphs[0]
    graphs.CACHE.watched[id(m)]()  # what weakref.finalize runs when m is collected: only records the id
    assert not graph.released
    assert graphs.stats()["entries"] == 1 and graph.released  # released at the next API call
    assert not fake.graphs[1].released


def test_two_models_do_not_share_graphs(fake):
    a, b = tiny_model(seed=6), tiny_model(seed=7)
    z = torch.randn(2, a.z_dim)
    xa = flowfm.fast_sample(a, z=z, steps=2, generator=gen(0))
    xb = flowfm.fast_sample(b, z=z, steps=2, generator=gen(0))
    assert graphs.stats()["captures"] == 2 and not torch.equal(xa, xb)


def test_failed_capture_warns_once_and_runs_eagerly(fake, model):
    fake.fail_capture = True
    z = torch.randn(2, model.z_dim)
    eager = flowfm.fast_sample(model, z=z, steps=2, generator=gen(0), cuda_graph=False)
    with pytest.warns(RuntimeWarning, match="capture failed"):
        got = flowfm.fast_sample(model, z=z, steps=2, generator=gen(0))
    torch.testing.assert_close(got, eager, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flowfm.fast_sample(model, z=z, steps=2)  # no second warning, no second capture attempt
    s = graphs.stats()
    assert (s["failures"], s["fallbacks"], s["captures"], s["entries"]) == (1, 1, 0, 0)
    with pytest.raises(RuntimeError, match="cuda_graph=False"):
        flowfm.fast_sample(model, z=z, steps=2, cuda_graph=True)


def test_required_mode_outside_inference_mode_returns_plain_tensors(fake, model):
    x0 = torch.randn(2, 3, 48)
    cond = torch.randn(2, model.z_dim)
    out = generate(model, x0, cond, 2, "euler", 1.0, None, cuda_graph=True)  # autograd on, explicit graphs
    assert graphs.stats()["captures"] == 1
    assert not out.is_inference() and not out.requires_grad
    again = generate(model, x0, cond, 2, "euler", 1.0, None, cuda_graph=True)
    torch.testing.assert_close(out, again, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(out, generate(model, x0, cond, 2, "euler", 1.0, None, cuda_graph=False),
                                   rtol=0, atol=0)
    # auto with autograd on stays eager
    generate(model, x0, cond, 2, "euler", 1.0, None)
    assert graphs.stats()["captures"] == 1 and graphs.stats()["hits"] == 1


def test_x0_is_not_modified_and_static_buffers_are_private(fake, model):
    x0 = torch.randn(2, 3, 48)
    cond = torch.randn(2, model.z_dim)
    keep = x0.clone()
    with torch.inference_mode():
        out = generate(model, x0, cond, 2, "heun", 1.0, None)
    assert torch.equal(x0, keep)
    entry = next(iter(graphs.CACHE.entries.values()))
    assert all(s.data_ptr() not in (x0.data_ptr(), cond.data_ptr()) for s in entry.static_inputs)
    assert out.data_ptr() != entry.static_out.data_ptr()


def test_bf16_model_eager_on_cpu():
    m = tiny_model(seed=8).to(torch.bfloat16)
    z = torch.randn(2, m.z_dim)
    for method in ("euler", "rk4"):
        x = flowfm.fast_sample(m, z=z, steps=2, method=method, guidance=2.0)
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
