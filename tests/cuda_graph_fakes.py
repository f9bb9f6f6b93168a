"""Shared pieces of the CUDA-graph tests (tests/test_graphs_*.py): a tiny model, a CPU stand-in for the CUDA
runtime whose "graph" re-runs the captured function on its static buffers (so the copy-in / copy-out plumbing runs),
and the fixtures around them. A test module imports the fixtures it uses and ``fresh_cache`` (autouse)."""
import contextlib

import pytest
import torch

import flowfm
from flowfm.config import FlowFMConfig
from flowfm_kernels import graphs


def tiny_model(seed=0, window=48):
    torch.manual_seed(seed)
    # p_uncond > 0: a null vector trained by condition dropout, so the unconditional and guided paths run
    m = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=window, p_uncond=0.1))
    for name, p in m.velocity_net.named_parameters():
        if "out_conv" in name or "film" in name:  # zero-initialised at construction: make the output depend on them
            torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(autouse=True)
def fresh_cache():
    graphs.clear()
    yield
    graphs.clear()


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
    return tiny_model()
