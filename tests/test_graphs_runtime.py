"""flowfm_kernels.graphs' CUDA runtime adapter (_CudaRuntime) against a mocked torch.cuda: the calls it makes to
capture, replay and release graphs, and the cuBLAS workspaces it frees.
"""
import contextlib

import torch

from flowfm_kernels import graphs
from tests.cuda_graph_fakes import fresh_cache  # noqa: F401 (pytest fixtures)


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
