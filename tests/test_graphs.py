"""CUDA-graph sampler (flowfm_kernels.graphs, docs/design.md §6 item 4).

CPU: the cuda_graph / $FLOWFM_CUDA_GRAPH / $FLOWFM_CUDA_GRAPH_CACHE rules, the address fingerprint, and the whole
cache (keys, LRU eviction, clear(), stats(), stale-weight recapture, capture-failure fallback) driven through
fast_sample with a fake runtime whose "graph" re-runs the captured function on its static buffers (so the copy-in /
copy-out plumbing is exercised too). GPU (@pytest.mark.gpu): replay against eager on real CUDA graphs.
"""
import contextlib
import gc
import warnings

import pytest
import torch
from torch import nn

import flowfm
from flowfm.config import FlowFMConfig
from flowfm.sampling import generate
from flowfm_kernels import graphs


def _model(seed=0, window=48):
    torch.manual_seed(seed)
    # p_uncond > 0: a null vector trained by condition dropout, so the unconditional and guided paths run
    m = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=window, p_uncond=0.1))
    for name, p in m.velocity_net.named_parameters():
        if "out_conv" in name or "film" in name:  # zero-initialised at construction: make the output depend on them
            torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def _gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(autouse=True)
def _fresh_cache():
    graphs.clear()
    yield
    graphs.clear()


# ------------------------------------------------------------------------------------------- a fake CUDA runtime
class FakeGraph:
    def __init__(self, run, out, pool):
        self.run, self.out, self.pool = run, out, pool
        self.released = False
        self.replays = 0


class FakeRuntime:
    """graphs._CudaRuntime's interface on CPU: capture runs the function once (its output becomes the static
    output), replay re-runs it on the static buffers and writes the static output in place, as a real graph does."""

    device_type = "cpu"

    def __init__(self):
        self.warmup_runs = 0
        self.graphs = []
        self.pools = 0
        self.fail_capture = False
        self.emptied = 0
        self.replay_order = []

    def is_capturing(self):
        return False

    def device_guard(self, device):
        return contextlib.nullcontext()

    def synchronize(self, device):
        pass

    def new_pool(self, device):
        self.pools += 1
        return ("pool", self.pools)

    def warmup(self, device, run, iters):
        for _ in range(iters):
            run()
            self.warmup_runs += 1

    def capture(self, device, pool, run):
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        out = run()
        graph = FakeGraph(run, out, pool)
        self.graphs.append(graph)
        return graph, out

    def begin_replay(self, device):
        return "stream"

    def end_replay(self, device, stream):
        pass

    def replay(self, graph):
        assert not graph.released, "replayed a released graph"
        assert torch.is_inference_mode_enabled()
        graph.out.copy_(graph.run())
        graph.replays += 1
        self.replay_order.append(graph)

    def release(self, graph):
        graph.released = True

    def empty_cache(self):
        self.emptied += 1


@pytest.fixture
def fake(monkeypatch):
    rt = FakeRuntime()
    monkeypatch.setattr(graphs, "_runtime", rt)
    monkeypatch.delenv("FLOWFM_CUDA_GRAPH", raising=False)
    monkeypatch.delenv("FLOWFM_CUDA_GRAPH_CACHE", raising=False)
    graphs.clear()
    yield rt
    graphs.clear()  # with the fake still installed (monkeypatch restores the real runtime after this)


@pytest.fixture(scope="module")
def model():
    return _model()


# --------------------------------------------------------------------------------------------- the switch (CPU)
def test_explicit_true_on_cpu_raises_and_auto_is_silent(model, monkeypatch):
    monkeypatch.delenv("FLOWFM_CUDA_GRAPH", raising=False)
    z = torch.randn(2, model.z_dim)
    with pytest.raises(ValueError, match="cuda_graph=True needs .*CUDA"):
        flowfm.fast_sample(model, z=z, steps=2, cuda_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = flowfm.fast_sample(model, z=z, steps=2, generator=_gen(0))
        b = flowfm.fast_sample(model, z=z, steps=2, generator=_gen(0), cuda_graph=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert graphs.stats()["captures"] == 0 and graphs.stats()["entries"] == 0


@pytest.mark.parametrize("value, expected", [(None, True), ("", True), ("auto", True), ("1", True), (" ON ", True),
                                             ("true", True), ("0", False), ("off", False), ("False", False)])
def test_env_switch_parsing(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FLOWFM_CUDA_GRAPH", raising=False)
    else:
        monkeypatch.setenv("FLOWFM_CUDA_GRAPH", value)
    assert graphs.env_setting() is expected


def test_env_switch_invalid_is_a_clear_error(model, monkeypatch):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH", "sometimes")
    with pytest.raises(ValueError, match="FLOWFM_CUDA_GRAPH='sometimes'"):
        graphs.env_setting()
    with pytest.raises(ValueError, match="FLOWFM_CUDA_GRAPH"):  # reported on CPU too (auto reads the variable)
        flowfm.fast_sample(model, n=2, steps=1)
    flowfm.fast_sample(model, n=2, steps=1, cuda_graph=False)  # an explicit argument does not read it


@pytest.mark.parametrize("value, expected", [(None, 8), ("", 8), ("3", 3), (" 1 ", 1)])
def test_cache_size_parsing(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FLOWFM_CUDA_GRAPH_CACHE", raising=False)
    else:
        monkeypatch.setenv("FLOWFM_CUDA_GRAPH_CACHE", value)
    assert graphs.cache_size() == expected


@pytest.mark.parametrize("value", ["0", "-2", "eight", "2.5"])
def test_cache_size_invalid(monkeypatch, value):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH_CACHE", value)
    with pytest.raises(ValueError, match="FLOWFM_CUDA_GRAPH_CACHE"):
        graphs.cache_size()


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_cuda_graph_argument_type(model, bad):
    with pytest.raises(ValueError, match="cuda_graph must be None"):
        flowfm.fast_sample(model, n=1, steps=1, cuda_graph=bad)


def test_policy_rules(fake, model, monkeypatch):
    x = torch.randn(2, 3, 48)
    z = torch.randn(2, model.z_dim)
    assert graphs.policy(False, model, x, z) == graphs.EAGER
    assert graphs.policy(None, model, x, z) == graphs.EAGER  # autograd on: auto stays eager
    with torch.no_grad():
        assert graphs.policy(None, model, x, z) == graphs.AUTO
        assert graphs.policy(True, model, x, z) == graphs.REQUIRED
        monkeypatch.setenv("FLOWFM_CUDA_GRAPH", "0")
        assert graphs.policy(None, model, x, z) == graphs.EAGER
        assert graphs.policy(True, model, x, z) == graphs.REQUIRED  # the argument wins over the variable
        monkeypatch.delenv("FLOWFM_CUDA_GRAPH")
        model.train()
        try:
            assert graphs.policy(None, model, x, z) == graphs.EAGER
            with pytest.raises(ValueError, match="training mode"):
                graphs.policy(True, model, x, z)
        finally:
            model.eval()
        monkeypatch.setattr(fake, "is_capturing", lambda: True)
        assert graphs.policy(None, model, x, z) == graphs.EAGER
        with pytest.raises(ValueError, match="capture is already running"):
            graphs.policy(True, model, x, z)
    # mixed devices (a "meta" tensor stands in for a second device) never use graphs
    assert graphs.policy(None, model, x, z.to("meta")) == graphs.EAGER


# ---------------------------------------------------------------------------------------------- fingerprint (CPU)
def test_fingerprint_tracks_replacement_not_in_place_updates():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    fp = graphs.fingerprint(m)
    assert len(fp) == 2 + 2 + 3  # weight, bias; BN weight, bias; running_mean, running_var, num_batches_tracked
    with torch.no_grad():
        m[0].weight.mul_(2)
        m[1].running_mean.add_(1)
    m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()})
    assert graphs.fingerprint(m) == fp
    m[0].weight = nn.Parameter(torch.randn(4, 4))
    fp2 = graphs.fingerprint(m)
    assert fp2 != fp
    m[0].weight.data = torch.randn(4, 4)  # no registration hook fires: caught by the address
    fp3 = graphs.fingerprint(m)
    assert fp3 != fp2
    m.append(nn.Linear(4, 2))  # a new submodule
    fp4 = graphs.fingerprint(m)
    assert len(fp4) == len(fp3) + 2
    del m[0].bias  # removed without a hook: re-listed
    assert len(graphs.fingerprint(m)) == len(fp4) - 1
    m[2].bias = None
    assert graphs.fingerprint(m)[-1] == 0
    assert graphs.fingerprint(object()) == ()


# ----------------------------------------------------------------------------------------- the cache (CPU, fake)
def test_first_call_captures_and_matches_eager_then_hits(fake, model):
    z = torch.randn(3, model.z_dim)
    kw = dict(z=z, steps=3, method="heun", guidance=2.0)
    eager = flowfm.fast_sample(model, generator=_gen(1), cuda_graph=False, **kw)
    first = flowfm.fast_sample(model, generator=_gen(1), **kw)
    torch.testing.assert_close(first, eager, rtol=0, atol=0)
    s = graphs.stats()
    assert (s["captures"], s["hits"], s["entries"]) == (1, 0, 1)
    assert fake.warmup_runs == graphs.WARMUP_ITERS and len(fake.graphs) == 1
    assert s["last_capture"]["warmup_s"] >= 0 and s["last_capture"]["first_call_s"] >= s["last_capture"]["warmup_s"]
    assert s["capture_s_total"] > 0
    # new noise and new conditions go through the static buffers
    z2 = torch.randn(3, model.z_dim)
    eager2 = flowfm.fast_sample(model, z=z2, steps=3, method="heun", guidance=2.0, generator=_gen(2),
                                cuda_graph=False)
    second = flowfm.fast_sample(model, z=z2, steps=3, method="heun", guidance=2.0, generator=_gen(2))
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
        kw = dict(z=z, steps=2, method=method, guidance=guidance, generator=_gen(seed))
        got = flowfm.fast_sample(model, **kw)
        kw["generator"] = _gen(seed)
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
    a = flowfm.fast_sample(model, z=z, steps=2, generator=_gen(0))
    b = flowfm.fast_sample(model, n=2, steps=2, generator=_gen(0))
    s = graphs.stats()
    assert (s["captures"], s["hits"]) == (1, 1)
    torch.testing.assert_close(b, flowfm.fast_sample(model, n=2, steps=2, generator=_gen(0), cuda_graph=False),
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
    assert not graphs._pools and not graphs._cache
    flowfm.fast_sample(model, z=z, steps=1)
    assert graphs.stats()["captures"] == 1 and fake.pools == 2  # a fresh pool after clear()
    graphs.reset_stats()
    assert graphs.stats()["captures"] == 0 and graphs.stats()["entries"] == 1


def test_in_place_weight_updates_are_replayed_without_recapture(fake):
    m = _model(seed=3)
    z = torch.randn(2, m.z_dim)
    before = flowfm.fast_sample(m, z=z, steps=2, generator=_gen(0))
    # one optimizer step (in place) and an in-place load_state_dict
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.loss(torch.randn(4, 3, 48), generator=_gen(5)).backward()
    opt.step()
    m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()})
    after = flowfm.fast_sample(m, z=z, steps=2, generator=_gen(0))
    assert (graphs.stats()["captures"], graphs.stats()["hits"]) == (1, 1)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, flowfm.fast_sample(m, z=z, steps=2, generator=_gen(0), cuda_graph=False),
                               rtol=0, atol=0)


def test_replaced_parameters_recapture_and_drop_stale_graphs(fake):
    m = _model(seed=4)
    z = torch.randn(2, m.z_dim)
    flowfm.fast_sample(m, z=z, steps=2)
    conv = m.velocity_net.out_conv
    conv.weight = nn.Parameter(torch.randn_like(conv.weight) * 0.1)
    got = flowfm.fast_sample(m, z=z, steps=2, generator=_gen(0))
    s = graphs.stats()
    assert (s["captures"], s["hits"], s["entries"]) == (2, 0, 1)  # the stale graph went with the old weights
    assert fake.graphs[0].released
    torch.testing.assert_close(got, flowfm.fast_sample(m, z=z, steps=2, generator=_gen(0), cuda_graph=False),
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
    m = _model(seed=5)
    other = _model(seed=6)
    flowfm.fast_sample(m, n=2, steps=1)
    flowfm.fast_sample(other, n=2, steps=1)
    assert graphs.stats()["entries"] == 2
    graph = fake.graphs[0]
    graphs._watched[id(m)]()  # what weakref.finalize runs when m is collected: only records the id
    assert not graph.released
    assert graphs.stats()["entries"] == 1 and graph.released  # released at the next API call
    assert not fake.graphs[1].released


def test_two_models_do_not_share_graphs(fake):
    a, b = _model(seed=6), _model(seed=7)
    z = torch.randn(2, a.z_dim)
    xa = flowfm.fast_sample(a, z=z, steps=2, generator=_gen(0))
    xb = flowfm.fast_sample(b, z=z, steps=2, generator=_gen(0))
    assert graphs.stats()["captures"] == 2 and not torch.equal(xa, xb)


def test_failed_capture_warns_once_and_runs_eagerly(fake, model):
    fake.fail_capture = True
    z = torch.randn(2, model.z_dim)
    eager = flowfm.fast_sample(model, z=z, steps=2, generator=_gen(0), cuda_graph=False)
    with pytest.warns(RuntimeWarning, match="capture failed"):
        got = flowfm.fast_sample(model, z=z, steps=2, generator=_gen(0))
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
    entry = next(iter(graphs._cache.values()))
    assert all(s.data_ptr() not in (x0.data_ptr(), cond.data_ptr()) for s in entry.static_inputs)
    assert out.data_ptr() != entry.static_out.data_ptr()


def test_bf16_model_eager_on_cpu():
    m = _model(seed=8).to(torch.bfloat16)
    z = torch.randn(2, m.z_dim)
    for method in ("euler", "rk4"):
        x = flowfm.fast_sample(m, z=z, steps=2, method=method, guidance=2.0)
        assert x.dtype == torch.float32 and torch.isfinite(x).all()


class _MockCuda:
    """Just enough of torch.cuda to check _CudaRuntime's protocol on CPU (streams, events, capture arguments)."""

    def __init__(self):
        self.log = []
        self.default = self.Stream("default")
        self.current = self.default

    def Stream(self, device=None):  # noqa: N802 - mirrors torch.cuda.Stream
        mock = self

        class FakeStream:
            def __init__(self, name):
                self.name = name

            def wait_stream(self, other):
                mock.log.append(("wait_stream", self.name, other.name))

            def wait_event(self, event):
                mock.log.append(("wait_event", self.name, event.stream.name))

            def __repr__(self):
                return f"Stream({self.name})"

        return FakeStream(device if isinstance(device, str) else f"side{len(self.log)}")

    def current_stream(self, device=None):
        return self.current

    @contextlib.contextmanager
    def stream(self, s):
        previous, self.current = self.current, s
        self.log.append(("enter_stream", s.name))
        try:
            yield
        finally:
            self.current = previous

    @contextlib.contextmanager
    def graph(self, g, pool=None, stream=None, capture_error_mode="global"):
        self.log.append(("capture", stream.name, pool, capture_error_mode))
        with self.stream(stream):
            yield
        g.captured = True

    def CUDAGraph(self):  # noqa: N802
        mock = self

        class FakeCUDAGraph:
            captured = False

            def replay(self):
                mock.log.append(("replay", mock.current.name))

            def reset(self):
                mock.log.append(("reset",))

        return FakeCUDAGraph()

    def Event(self):  # noqa: N802
        class FakeEvent:
            stream = None

            def record(self, stream):
                self.stream = stream

        return FakeEvent()


def test_cuda_runtime_protocol_with_mocked_torch_cuda(monkeypatch):
    mock = _MockCuda()
    for name in ("Stream", "current_stream", "stream", "graph", "CUDAGraph", "Event"):
        monkeypatch.setattr(torch.cuda, name, getattr(mock, name))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: mock.log.append(("sync",)))
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool", 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    rt = graphs._CudaRuntime()
    dev = torch.device("cuda:0")
    assert isinstance(rt.device_guard(dev), contextlib.nullcontext)
    seen = []
    rt.warmup(dev, lambda: seen.append(mock.current.name), 2)
    side = seen[0]
    assert seen == [side, side] and side != "default"  # warm-up on the side stream ...
    assert mock.log[0] == ("wait_stream", side, "default") and mock.log[-1] == ("wait_stream", "default", side)
    graph, out = rt.capture(dev, rt.new_pool(dev), lambda: mock.current.name)
    assert out == side and graph.captured  # ... and capture on the same one, into the shared pool
    assert ("capture", side, ("pool", 0), "thread_local") in mock.log
    mock.log.clear()
    s = rt.begin_replay(dev)
    rt.replay(graph)
    rt.end_replay(dev, s)
    s = rt.begin_replay(dev)  # same stream again: no cross-stream wait
    rt.end_replay(dev, s)
    assert [e[0] for e in mock.log] == ["replay"]
    other = mock.Stream("other")
    with mock.stream(other):
        s = rt.begin_replay(dev)  # another stream waits for the previous replay's event
        rt.replay(graph)
        rt.end_replay(dev, s)
    assert ("wait_event", "other", "default") in mock.log and ("replay", "other") in mock.log
    rt.release(graph)
    assert mock.log[-1] == ("reset",)
    rt.empty_cache()  # CUDA never initialised: nothing to empty, no error


def test_empty_cache_releases_cublas_workspaces(monkeypatch):
    """clear() must leave nothing of the warm-ups allocated, whatever ran before: torch keeps a cuBLAS workspace per
    (handle, stream) until it is released explicitly, so the runtime releases them before emptying the cache."""
    log = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("sync"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: log.append("empty_cache"))
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: log.append("release_workspaces"),
                        raising=False)
    graphs._CudaRuntime().empty_cache()
    assert log == ["sync", "release_workspaces", "empty_cache"]


# ---------------------------------------------------------------------------------------------------------- GPU
def _cuda_model(seed=0, window=64, backend=None):
    return _model(seed, window).cuda().set_backend(backend)


def _pair(m, seed=0, **kw):
    """(graph, eager) results of the same call with the same noise."""
    graph = flowfm.fast_sample(m, generator=_gen(seed, "cuda"), cuda_graph=True, **kw)
    eager = flowfm.fast_sample(m, generator=_gen(seed, "cuda"), cuda_graph=False, **kw)
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
    a = flowfm.fast_sample(m, n=3, steps=2, generator=_gen(0, "cuda"))
    keep = a.clone()
    b = flowfm.fast_sample(m, n=3, steps=2, generator=_gen(1, "cuda"))
    assert torch.equal(a, keep) and not torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_replay_on_another_stream():
    m = _cuda_model()
    z = torch.randn(3, m.z_dim, device="cuda")
    flowfm.fast_sample(m, z=z, steps=2)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = flowfm.fast_sample(m, z=z, steps=2, generator=_gen(3, "cuda"))
    torch.cuda.current_stream().wait_stream(side)
    eager = flowfm.fast_sample(m, z=z, steps=2, generator=_gen(3, "cuda"), cuda_graph=False)
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
    before = flowfm.fast_sample(m, z=z, steps=3, generator=_gen(0, "cuda"))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.train()
    m.loss(torch.randn(8, 3, 64, device="cuda"), generator=_gen(1, "cuda")).backward()
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
    flowfm.fast_sample(m, z=z, steps=2, generator=_gen(0, "cuda"))  # capture (allowed to synchronise)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = flowfm.fast_sample(m, z=z, steps=2, generator=_gen(1, "cuda"))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert out.shape == (4, 3, 64) and torch.isfinite(out).all()
