"""CUDA-graph replay of whole sampling loops (docs/design.md §6 item 4): capture once per key, then copy-in / replay /
copy-out.

:func:`flowfm.sampling.generate` (and so :func:`flowfm.fast_sample`) routes CUDA calls through
:func:`graphed_call`: the first call for a key captures the whole N-step loop (velocity network, solver steps,
guidance combine) into a :class:`torch.cuda.CUDAGraph`; later calls copy the new inputs (noise x0, conditions z)
into the graph's static input buffers, replay it (one launch instead of hundreds of kernels plus their Python
dispatch) and return a clone of the static output. Replay launches the same kernels on the same shapes as eager,
so every call, the first included, should return the eager result for the same noise (``tests/test_graphs.py``
checks 1e-5 in fp32 on a GPU)::

    x = flowfm.fast_sample(model.cuda(), n=64, steps=10)           # graphs on (auto) for CUDA tensors
    x = flowfm.fast_sample(model, n=64, steps=10, cuda_graph=False) # eager
    from flowfm_kernels import graphs
    graphs.stats()   # {'hits': .., 'captures': .., 'entries': .., 'last_capture': {'warmup_s', 'capture_s', ..}}
    graphs.clear()   # drop every graph, its static buffers and memory pools (and reset the counters)

**When graphs are used** (:func:`policy`): ``cuda_graph=False`` -> never. ``cuda_graph=None`` (default, "auto") ->
when ``$FLOWFM_CUDA_GRAPH`` is not ``0``, every input is a CUDA tensor, the model is in eval mode, autograd is off
(``torch.no_grad`` / ``inference_mode``, as in ``fast_sample``), no capture is already running on the current
stream and ``torch.compile`` is not tracing; otherwise the call runs eagerly, silently (never on CPU).
``cuda_graph=True`` -> required: a call that cannot use a graph raises :class:`ValueError` saying why (e.g. CPU
tensors: CUDA graphs only capture GPU work), a failed capture raises :class:`RuntimeError`, and autograd state is
ignored (the output never carries autograd history). The explicit argument wins over the environment variable
(as ``backend=`` wins over ``$FLOWFM_BACKEND``).

**Key.** One graph per (model identity, the caller's key: steps, method, guidance weight, kernel backends),
device, every input's shape and dtype, the kernel-affecting environment (``FLOWFM_BACKEND``,
``FLOWFM_TRITON_DOT_PRECISION``, ``FLOWFM_CUDA_IMPL``, ``FLOWFM_DEBUG_NAN_POISON``, the fp32 matmul precision, cuDNN
TF32), the CUDA autocast state, and the *address fingerprint* of the model: the ``data_ptr()`` of every parameter and
buffer. Python numbers used by the loop (the guidance weight, method, step count) are baked into the captured
kernels, hence in the key; the time grid is a static device tensor built once per graph, and the per-sample t / dt
are computed from it inside the graph, so nothing per call is a host value.

**Weights are captured by address.** A graph reads the parameters' memory when it replays, so

* updating weights *in place* is seen by the next replay with no recapture: ``model.load_state_dict(sd)`` (copies
  in place), an optimizer step, ``p.data.copy_(...)``, ``with torch.no_grad(): p.mul_(..)``;
* *replacing* a parameter or buffer tensor (``module.weight = nn.Parameter(...)``, ``p.data = other``,
  ``model.to(dtype)``, ``load_state_dict(..., assign=True)``, a new submodule) changes the fingerprint, so the next
  call captures a new graph (and drops the model's stale graphs). Graphs hold references to the tensors they read,
  so a captured address can never be reused by another tensor while its graph exists. Only a tensor added by
  inserting into ``module._parameters`` / ``_buffers`` / ``_modules`` directly (bypassing ``Module.__setattr__`` and
  ``register_*``) goes unnoticed: call :func:`clear` after such edits.
  ``_version`` counters are deliberately *not* in the key: they change on every in-place update, which replay
  already handles, and would force a recapture after every optimizer step.

The fingerprint is cheap: the model's (module dict, name) slots are listed once and re-listed only when a
parameter, buffer or submodule is registered anywhere (global ``nn.Module`` registration hooks, installed on first
use), so a call reads ~one ``data_ptr()`` per tensor instead of walking the module tree.

**Memory.** Static inputs are ordinary allocations; everything the loop allocates lives in a graph memory pool, one
pool per device shared by all of that device's graphs (safe here because every replay's output is copied out
before the next replay may start: replays are serialised per device, across streams too, by an event), and the
captured graphs are kept in an LRU cache of ``$FLOWFM_CUDA_GRAPH_CACHE`` entries (default 8). :func:`clear` frees
all of it (``torch.cuda.memory_allocated`` drops; the pool is returned to the driver by ``empty_cache``).

**Capture.** Warm-up first, on a side stream (:data:`WARMUP_ITERS` full loops: Triton autotuning and compilation,
cuDNN / cuBLAS algorithm selection and workspaces, CuPy JIT loads all happen there, never inside the capture), then
capture on the same side stream under ``torch.inference_mode`` with ``capture_error_mode="thread_local"``. The
warm-up and capture times of every capture are recorded (:func:`stats` ``last_capture`` / ``capture_s_total``) so
benchmarks can report the first call separately. In "auto" mode a capture that fails (an op that cannot be
captured) warns once and that key runs eagerly from then on; errors in the warm-up are eager errors and propagate.

Environment variables:
``FLOWFM_CUDA_GRAPH``        auto | 1 | 0 (default auto; 1 = auto: on for CUDA tensors, it cannot force graphs on CPU)
``FLOWFM_CUDA_GRAPH_CACHE``  positive integer, the LRU bound on cached graphs (default 8)

Thread safety: one lock serialises lookups, captures and replays. Not for multi-process use of one graph.
NVTX ranges inside the loop are recorded at capture time only (a replay is one node on the timeline).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

ENV_SWITCH = "FLOWFM_CUDA_GRAPH"
ENV_CACHE = "FLOWFM_CUDA_GRAPH_CACHE"
DEFAULT_CACHE_SIZE = 8
#: Full loops run before capture: the first triggers Triton autotuning / compilation and algorithm selection, the
#: second runs the steady state once (lazy per-stream workspaces) so nothing first-time happens inside the capture.
WARMUP_ITERS = 2
#: Environment variables that change which kernels the loop launches (so they are part of the key).
KERNEL_ENV = ("FLOWFM_BACKEND", "FLOWFM_TRITON_DOT_PRECISION", "FLOWFM_CUDA_IMPL", "FLOWFM_DEBUG_NAN_POISON")

EAGER, AUTO, REQUIRED = "eager", "auto", "required"

_ON = ("", "auto", "1", "true", "on", "yes")
_OFF = ("0", "false", "off", "no")


# ------------------------------------------------------------------------------------------------ configuration
def env_setting() -> bool:
    """``$FLOWFM_CUDA_GRAPH`` parsed: True (auto, the default) or False (off). Invalid values raise ValueError."""
    raw = os.environ.get(ENV_SWITCH)
    if raw is None:
        return True
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{ENV_SWITCH}={raw!r} is not valid; expected 0 (off) or 1 / auto (CUDA graphs for CUDA "
                     "tensors, the default)")


def cache_size() -> int:
    """``$FLOWFM_CUDA_GRAPH_CACHE`` (default 8): how many captured graphs the LRU cache keeps."""
    raw = os.environ.get(ENV_CACHE)
    if raw is None or not raw.strip():
        return DEFAULT_CACHE_SIZE
    try:
        size = int(raw.strip())
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"{ENV_CACHE}={raw!r} is not valid; expected a positive integer (default "
                         f"{DEFAULT_CACHE_SIZE})")
    return size


# ------------------------------------------------------------------------------------------------------ runtime
class _CudaRuntime:
    """The CUDA side of capture and replay (tests swap in a CPU fake with the same methods)."""

    device_type = "cuda"

    def __init__(self) -> None:
        self._side: dict[torch.device, torch.cuda.Stream] = {}
        self._events: dict[torch.device, torch.cuda.Event] = {}
        self._last_stream: dict[torch.device, torch.cuda.Stream] = {}

    def is_capturing(self) -> bool:
        return torch.cuda.is_current_stream_capturing()

    def device_guard(self, device: torch.device):
        if device.index is not None and device.index != torch.cuda.current_device():
            return torch.cuda.device(device)
        return contextlib.nullcontext()

    def synchronize(self, device: torch.device) -> None:
        torch.cuda.synchronize(device)

    def new_pool(self, device: torch.device) -> Any:
        return torch.cuda.graph_pool_handle()

    def _side_stream(self, device: torch.device) -> torch.cuda.Stream:
        stream = self._side.get(device)
        if stream is None:
            stream = self._side[device] = torch.cuda.Stream(device)
        return stream

    def warmup(self, device: torch.device, run: Callable[[], Any], iters: int) -> None:
        current, side = torch.cuda.current_stream(device), self._side_stream(device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(iters):
                run()
        current.wait_stream(side)

    def capture(self, device: torch.device, pool: Any, run: Callable[[], torch.Tensor]):
        graph = torch.cuda.CUDAGraph()
        # the same side stream as the warm-up (and every capture into this pool, as torch asks for pool sharing)
        with torch.cuda.graph(graph, pool=pool, stream=self._side_stream(device), capture_error_mode="thread_local"):
            out = run()
        return graph, out

    def begin_replay(self, device: torch.device) -> Any:
        """Orders this replay after the previous one on ``device`` when it ran on another stream (they share the
        static buffers and the memory pool); returns the stream to pass to :meth:`end_replay`."""
        current = torch.cuda.current_stream(device)
        last = self._last_stream.get(device)
        if last is not None and last != current:
            current.wait_event(self._events[device])
        return current

    def end_replay(self, device: torch.device, stream: Any) -> None:
        event = self._events.get(device)
        if event is None:
            event = self._events[device] = torch.cuda.Event()
        event.record(stream)
        self._last_stream[device] = stream

    def replay(self, graph: Any) -> None:
        graph.replay()

    def release(self, graph: Any) -> None:
        graph.reset()

    def empty_cache(self) -> None:
        """Returns cached memory to the driver, cuBLAS workspaces included: torch keeps one workspace per (handle,
        stream) until told otherwise, so the first warm-up on the side stream would otherwise leave one allocated
        after :func:`clear` (and a memory check after ``clear()`` would pass or fail by test order)."""
        if torch.cuda.is_initialized():
            release_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
            if release_workspaces is not None:
                torch.cuda.synchronize()
                release_workspaces()
            torch.cuda.empty_cache()


_runtime: Any = _CudaRuntime()


# ------------------------------------------------------------------------------------------------------- policy
def policy(cuda_graph: Optional[bool], model: Any, *tensors: torch.Tensor) -> str:
    """How a sampling call runs: :data:`EAGER`, :data:`AUTO` (graph; a failed capture falls back to eager) or
    :data:`REQUIRED` (``cuda_graph=True``: graph or a clear error). See the module docstring for the rules."""
    if cuda_graph is not None and not isinstance(cuda_graph, bool):
        raise ValueError(f"cuda_graph must be None (auto), True or False, got {cuda_graph!r}")
    if cuda_graph is False:
        return EAGER
    explicit = cuda_graph is True
    if not explicit and not env_setting():  # parsed even on CPU, so a typo is reported wherever it is set
        return EAGER
    device = tensors[0].device if tensors else torch.device("cpu")
    if device.type != _runtime.device_type or any(t.device != device for t in tensors):
        if explicit:
            where = sorted({str(t.device) for t in tensors})
            raise ValueError(f"cuda_graph=True needs every input on one CUDA device, got {where}: CUDA graphs "
                             "capture GPU work only; leave cuda_graph=None to use them whenever the model is on a GPU")
        return EAGER
    reason = _blocker(model)
    if reason is not None:
        if explicit:
            raise ValueError(f"cuda_graph=True cannot be used here: {reason}")
        return EAGER
    if explicit:
        return REQUIRED
    return EAGER if torch.is_grad_enabled() else AUTO


def _blocker(model: Any) -> Optional[str]:
    if getattr(model, "training", False):
        return "the model is in training mode (CUDA graphs are for inference; call model.eval())"
    if torch.compiler.is_compiling():
        return "torch.compile is tracing this call"
    if _runtime.is_capturing():
        return "a CUDA graph capture is already running on the current stream"
    return None


# ------------------------------------------------------------------------------------------------- fingerprint
class _SlotIndex:
    """Each model's (module dict, name) slots of parameters and buffers, re-listed only after a parameter, buffer
    or submodule was registered anywhere in the process (``nn.Module``'s global registration hooks, installed on
    first use and counted in ``generation``)."""

    def __init__(self):
        self.generation = 0
        self.hooks_installed = False
        self.lists: "weakref.WeakKeyDictionary[nn.Module, tuple[int, list]]" = weakref.WeakKeyDictionary()

    def _bump(self, module, name, value):  # a registration hook: returns None, keeps the value
        self.generation += 1

    def install_hooks(self) -> None:
        if self.hooks_installed:
            return
        from torch.nn.modules import module as module_mod

        module_mod.register_module_parameter_registration_hook(self._bump)
        module_mod.register_module_buffer_registration_hook(self._bump)
        module_mod.register_module_module_registration_hook(self._bump)
        self.hooks_installed = True

    def slots(self, model: nn.Module) -> list:
        cached = self.lists.get(model)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        generation = self.generation
        slots = [(d, name) for m in model.modules() for d in (m._parameters, m._buffers) for name in d]
        self.lists[model] = (generation, slots)
        return slots

    def forget(self, model: nn.Module) -> None:
        self.lists.pop(model, None)


_SLOTS = _SlotIndex()


def fingerprint(model: Any) -> tuple:
    """The ``data_ptr()`` of every parameter and buffer of ``model`` (0 for None slots; ``()`` for a model that is
    not an ``nn.Module``): changes when a tensor is replaced, not when it is updated in place."""
    if not isinstance(model, nn.Module):
        return ()
    _SLOTS.install_hooks()
    for _ in range(2):
        slots = _SLOTS.slots(model)
        try:
            return tuple([0 if (t := d[name]) is None else t.data_ptr() for d, name in slots])
        except KeyError:  # a slot deleted without a registration hook (``del module.weight``): re-list
            _SLOTS.forget(model)
    raise RuntimeError("the model's parameters changed while being fingerprinted")


def _held_tensors(model: Any) -> tuple:
    """Detached aliases of every parameter / buffer: keep the captured addresses alive while the graph exists."""
    if not isinstance(model, nn.Module):
        return ()
    return tuple(t.detach() for d, name in _SLOTS.slots(model) if (t := d[name]) is not None)


def _environment_key(device: torch.device) -> tuple:
    env = tuple(os.environ.get(name) for name in KERNEL_ENV)
    autocast = torch.is_autocast_enabled(device.type)
    return (env, torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, autocast,
            torch.get_autocast_dtype(device.type) if autocast else None)


# ------------------------------------------------------------------------------------------------------- cache
@dataclass(eq=False)
class _Entry:
    key: tuple
    model_id: int
    model_ref: Any
    device: torch.device
    graph: Any
    static_inputs: tuple
    constants: tuple
    static_out: torch.Tensor
    held: tuple
    warmup_s: float
    capture_s: float
    replays: int = 0

    def replay(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        rt = _runtime
        with rt.device_guard(self.device):
            stream = rt.begin_replay(self.device)
            with torch.inference_mode():
                for static, x in zip(self.static_inputs, inputs):
                    static.copy_(x)
                rt.replay(self.graph)
            out = self.static_out.clone()  # in the caller's grad mode: a normal tensor outside inference_mode
            rt.end_replay(self.device, stream)
        self.replays += 1
        return out


@dataclass
class _Stats:
    hits: int = 0
    captures: int = 0
    evictions: int = 0
    failures: int = 0
    fallbacks: int = 0
    capture_s_total: float = 0.0
    last_capture: Optional[dict] = None


def _model_alive(entry: _Entry, model: Any) -> bool:
    return entry.model_ref is None or entry.model_ref() is model


def _make_key(model: Any, key: tuple, inputs: Sequence[torch.Tensor], device: torch.device) -> tuple:
    shapes = tuple((tuple(t.shape), t.dtype) for t in inputs)
    return (id(model), tuple(key), device, shapes, _environment_key(device), fingerprint(model))


class GraphCache:
    """The captured graphs of one process, keyed by (model, key, device, input shapes / dtypes, kernel environment,
    model fingerprint), bounded by :func:`cache_size` (least recently used evicted first). It owns the graphs, their
    static buffers, one memory pool per device, the keys whose capture failed, the counters of :meth:`stats` and a
    ``weakref.finalize`` per live model that drops the model's graphs once it is collected. All methods hold one
    re-entrant lock. The module-level functions act on the process's instance, :data:`CACHE`."""

    def __init__(self):
        self.lock = threading.RLock()
        self.entries: "OrderedDict[tuple, _Entry]" = OrderedDict()
        self.failed: set = set()
        self.pools: dict = {}
        self.counters = _Stats()
        self.watched: dict[int, Any] = {}  # id(model) -> weakref.finalize, one per live model with graphs
        self.dead: list[int] = []  # ids of models collected since the last call (released outside any capture)

    # -- models
    def _model_collected(self, model_id: int) -> None:
        self.dead.append(model_id)  # only record: this may run inside a GC pass, even during a capture

    def _watch(self, model: Any) -> None:
        if id(model) not in self.watched:
            try:
                self.watched[id(model)] = weakref.finalize(model, self._model_collected, id(model))
            except TypeError:  # not weak-referenceable: entries then go only by LRU / clear()
                pass

    def _purge_dead(self) -> None:
        while self.dead:
            model_id = self.dead.pop()
            self.watched.pop(model_id, None)
            self._drop(lambda e: e.model_id == model_id)

    # -- entries
    def _drop(self, predicate: Callable[[_Entry], bool]) -> None:
        for key in [k for k, e in self.entries.items() if predicate(e)]:
            self._release(self.entries.pop(key))

    def _release(self, entry: _Entry) -> None:
        rt = _runtime
        rt.synchronize(entry.device)  # a replay still in flight must finish before its graph and buffers go
        graph, entry.graph, entry.static_out = entry.graph, None, None
        entry.static_inputs = entry.constants = entry.held = ()
        rt.release(graph)
        if not any(e.device == entry.device for e in self.entries.values()):
            self.pools.pop(entry.device, None)  # the pool dies with its last graph; the next capture opens a new one

    # -- calls
    def call(self, model: Any, fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], key: tuple = (),
             constants: Optional[Callable[[], Sequence[torch.Tensor]]] = None, strict: bool = False) -> torch.Tensor:
        """:func:`graphed_call` on this cache."""
        inputs = tuple(inputs)
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise ValueError("graphed_call needs at least one tensor input")
        device = inputs[0].device
        if device.type != _runtime.device_type or any(t.device != device for t in inputs):
            raise ValueError(f"graphed_call needs every input on one {_runtime.device_type} device, got "
                             f"{sorted({str(t.device) for t in inputs})}")
        with self.lock:
            self._purge_dead()
            full_key = _make_key(model, key, inputs, device)
            entry = self.entries.get(full_key)
            if entry is not None and not _model_alive(entry, model):  # id reused by a new model
                self._drop(lambda e: e is entry)
                entry = None
            if entry is not None:
                self.entries.move_to_end(full_key)
                self.counters.hits += 1
                return entry.replay(inputs)
            if full_key in self.failed and not strict:
                self.counters.fallbacks += 1
                return _eager(fn, inputs, constants)
            start = time.perf_counter()
            entry = self._capture(model, fn, inputs, constants, full_key, device, strict)
            if entry is None:
                return _eager(fn, inputs, constants)
            out = entry.replay(inputs)
            _runtime.synchronize(device)
            self.counters.last_capture["first_call_s"] = time.perf_counter() - start
            return out

    def _capture(self, model, fn, inputs, constants, full_key, device, strict) -> Optional[_Entry]:
        rt = _runtime
        # the model's graphs for other fingerprints read tensors it no longer has: drop them (and their memory)
        fp = full_key[-1]
        self._drop(lambda e: e.model_id == id(model) and e.key[-1] != fp and _model_alive(e, model))
        with rt.device_guard(device), torch.inference_mode():
            static_inputs = tuple(torch.empty_like(x, memory_format=torch.contiguous_format).copy_(x)
                                  for x in inputs)
            consts = tuple(constants()) if constants is not None else ()
            held = _held_tensors(model)

            def run():
                return fn(*static_inputs, *consts)

            rt.synchronize(device)
            t0 = time.perf_counter()
            rt.warmup(device, run, WARMUP_ITERS)  # eager errors propagate as they are
            rt.synchronize(device)
            t1 = time.perf_counter()
            pool = self.pools.get(device)
            if pool is None:
                pool = self.pools[device] = rt.new_pool(device)
            try:
                graph, static_out = rt.capture(device, pool, run)
                if not isinstance(static_out, torch.Tensor):
                    rt.release(graph)
                    raise TypeError("the captured function must return one tensor, got "
                                    f"{type(static_out).__name__}")
            except Exception as exc:  # noqa: BLE001 - any capture failure: report, or fall back to eager
                self.counters.failures += 1
                if not any(e.device == device for e in self.entries.values()):
                    self.pools.pop(device, None)
                if strict:
                    raise RuntimeError(f"CUDA graph capture of the sampling loop failed ({exc!r}); run with "
                                       "cuda_graph=False") from exc
                self.failed.add(full_key)
                warnings.warn(f"flowfm: CUDA graph capture failed ({exc!r}); this configuration runs eagerly",
                              RuntimeWarning, stacklevel=5)
                return None
            rt.synchronize(device)
            t2 = time.perf_counter()
        try:
            model_ref = weakref.ref(model)
        except TypeError:
            model_ref = None
        entry = _Entry(full_key, id(model), model_ref, device, graph, static_inputs, consts, static_out, held,
                       t1 - t0, t2 - t1)
        self._watch(model)
        self.entries[full_key] = entry
        s = self.counters
        s.captures += 1
        s.capture_s_total += entry.warmup_s + entry.capture_s
        s.last_capture = dict(key=repr(full_key[1]), shapes=[list(t.shape) for t in inputs],
                              device=str(device), warmup_s=entry.warmup_s, capture_s=entry.capture_s)
        bound = cache_size()
        while len(self.entries) > bound:  # least recently used first (hits move their entry to the end)
            self._release(self.entries.pop(next(iter(self.entries))))
            s.evictions += 1
        return entry

    # -- bookkeeping
    def stats(self) -> dict:
        """:func:`stats` of this cache."""
        with self.lock:
            self._purge_dead()
            s = self.counters
            return dict(hits=s.hits, captures=s.captures, evictions=s.evictions, failures=s.failures,
                        fallbacks=s.fallbacks, entries=len(self.entries), max_entries=cache_size(),
                        capture_s_total=s.capture_s_total,
                        last_capture=None if s.last_capture is None else dict(s.last_capture))

    def reset_stats(self) -> None:
        with self.lock:
            self.counters = _Stats()

    def clear(self) -> None:
        """:func:`clear` of this cache."""
        with self.lock:
            self.dead.clear()
            self._drop(lambda e: True)
            for finalizer in self.watched.values():
                finalizer.detach()
            self.watched.clear()
            self.failed.clear()
            self.pools.clear()
            self.counters = _Stats()
            _runtime.empty_cache()


CACHE = GraphCache()


def _eager(fn, inputs, constants) -> torch.Tensor:
    return fn(*inputs, *(tuple(constants()) if constants is not None else ()))


# --------------------------------------------------------------------------------------------------- public API
def graphed_call(model: Any, fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], key: tuple = (),
                 constants: Optional[Callable[[], Sequence[torch.Tensor]]] = None,
                 strict: bool = False) -> torch.Tensor:
    """``fn(*inputs, *constants())`` through a cached CUDA graph; returns a new tensor (a clone of the graph's
    static output).

    ``fn`` must return one tensor and be a pure function of its tensor arguments, of ``model``'s parameters and
    buffers (read by address) and of ``key``, which must hold every Python value ``fn`` bakes in (steps, method,
    guidance, backend names...): the captured ``fn`` of the first call serves every later call with an equal key.
    ``inputs`` change per call (copied into static buffers before each replay); ``constants()`` builds device
    tensors once per graph (e.g. the time grid). ``strict`` (``cuda_graph=True``): a failed capture raises
    RuntimeError instead of warning and running eagerly. Call it under :func:`policy` != ``"eager"``."""
    return CACHE.call(model, fn, inputs, key, constants, strict)


def stats() -> dict:
    """Counters since the last :func:`clear` / :func:`reset_stats`: ``hits`` (replays of a cached graph),
    ``captures``, ``evictions`` (LRU), ``failures`` (captures that raised), ``fallbacks`` (eager runs of a key whose
    capture failed), ``entries`` (graphs cached now), ``max_entries``, ``capture_s_total`` (warm-up + capture
    seconds) and ``last_capture`` (``warmup_s``, ``capture_s``, ``first_call_s`` = the whole first call including its
    replay, the key and shapes) or None."""
    return CACHE.stats()


def reset_stats() -> None:
    """Zero the counters of :func:`stats` (the cached graphs stay)."""
    CACHE.reset_stats()


def clear() -> None:
    """Free every captured graph, its static buffers and the memory pools (and forget failed keys); resets
    :func:`stats`. Needed after structural model edits that bypass ``Module.__setattr__`` (see module docstring)."""
    CACHE.clear()


__all__ = ["GraphCache", "CACHE", "graphed_call", "policy", "stats", "reset_stats", "clear", "fingerprint",
           "env_setting", "cache_size", "EAGER", "AUTO", "REQUIRED", "WARMUP_ITERS", "ENV_SWITCH", "ENV_CACHE",
           "DEFAULT_CACHE_SIZE"]
