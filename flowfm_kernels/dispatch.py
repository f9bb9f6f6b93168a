"""Backend selection for every FlowFM kernel.

Each op (``gn_film_silu``, ``conv_block``, ``flow_matching_loss``, ``interpolate``, the ODE steps) has up to three
implementations, registered here by *import path* so that importing :mod:`flowfm_kernels` never imports Triton or
the compiled CUDA module:

``eager``   plain PyTorch, the reference every other backend is tested against; always available.
``triton``  Triton kernels; on CUDA tensors, or on CPU tensors when ``TRITON_INTERPRET=1`` (tests only: slow).
``cuda``    the CUDA C++ kernels of ``csrc/`` through ``flowfm_kernels._C`` (or CuPy/NVRTC JIT); CUDA tensors only.

Choosing:
``backend=None`` reads ``FLOWFM_BACKEND`` (default ``"auto"``).
``"auto"`` takes, per op, the first available of the op's preference list for the tensor's device (CUDA:
``cuda`` > ``triton`` > ``eager`` unless an op says otherwise; CPU: ``eager``). If a preferred GPU backend is
missing on a CUDA device, it falls back and warns once per (op, backend) with the reason.
An explicit ``"triton"`` / ``"cuda"`` that cannot run raises :class:`BackendUnavailableError` with the reason.
Every op the model calls (conv block, loss, interpolation, ODE steps) has all three implementations, so
``FlowFM(cfg, backend="cuda")`` runs CUDA C++ in every op; for the conv block that is torch's Conv1d (cuDNN) followed
by the CUDA C++ GN+FiLM+SiLU epilogue (see each op's ``notes``). :func:`explain` says, without raising or warning,
what a request resolves to per op and why (``flowfm info`` prints it).

Environment variables:
``FLOWFM_BACKEND``               auto | eager | triton | cuda (default auto)
``TRITON_INTERPRET``             1 lets the triton backend run on CPU tensors (Triton's interpreter; tests)
``FLOWFM_TRITON_DOT_PRECISION``  tf32 (default) | tf32x3 | ieee: precision of fp32 ``tl.dot`` in the conv kernels
``FLOWFM_DETERMINISTIC``         1 pins one autotune config per (kernel, shape bucket) in the Triton conv / GroupNorm
                                 kernels (so their reductions sum in the same order in every process); also on
                                 under ``torch.use_deterministic_algorithms(True)``. Default 0: timed choice
``FLOWFM_DEBUG_NAN_POISON``      1 fills the kernels' internal buffers with NaN first (tests: catches unwritten
                                 elements)
``FLOWFM_CUDA_IMPL``             auto | ext | jit: the compiled ``_C`` module, the CuPy/NVRTC JIT build, or either
``FLOWFM_CUDA_GRAPH``            auto (default) | 1 | 0: capture ``fast_sample``'s loop as a CUDA graph
``FLOWFM_CUDA_GRAPH_CACHE``      how many captured graphs to keep (LRU, default 8)
``FLOWFM_BUILD_CUDA``            (install time) auto | 1 | 0: build ``flowfm_kernels._C`` with nvcc
``FLOWFM_CUDA_ARCH``             (install time) GPU architectures for nvcc, default sm_90
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

BACKENDS = ("eager", "triton", "cuda")
_VALID_REQUESTS = ("auto",) + BACKENDS


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


# op name -> backend -> "module:function"
_REGISTRY: dict[str, dict[str, str]] = {}
# op name -> preference order on CUDA devices under "auto"
_CUDA_PREFERENCE: dict[str, tuple[str, ...]] = {}
# op name -> backend -> what that implementation runs, where it is not simply "the op in that backend"
_NOTES: dict[str, dict[str, str]] = {}
_warned: set[tuple[str, str]] = set()


def register(op: str, implementations: dict[str, str], cuda_preference: tuple[str, ...] = ("cuda", "triton", "eager"),
             notes: Optional[dict[str, str]] = None):
    """Register the implementations of ``op`` as ``{"eager": "pkg.mod:fn", ...}`` (imported lazily). ``notes``:
    ``{backend: one line}`` describing an implementation that mixes libraries (shown by :func:`explain`)."""
    unknown = (set(implementations) | set(notes or {})) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)} for op {op!r}; expected a subset of {BACKENDS}")
    if "eager" not in implementations:
        raise ValueError(f"op {op!r} needs an eager reference implementation")
    _REGISTRY[op] = dict(implementations)
    _CUDA_PREFERENCE[op] = tuple(b for b in cuda_preference if b in implementations)
    _NOTES[op] = dict(notes or {})


def implementation_notes(op: str) -> dict[str, str]:
    """``{backend: what it runs}`` for ``op``'s implementations that mix libraries (e.g. cuDNN + CUDA C++)."""
    return dict(_NOTES.get(op, {}))


def cuda_preference(op: str) -> tuple[str, ...]:
    """The order in which ``auto`` tries ``op``'s backends on a CUDA device."""
    return _CUDA_PREFERENCE[op]


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)


def registered_backends(op: str) -> tuple[str, ...]:
    """The backends that have an implementation of ``op`` registered, in :data:`BACKENDS` order."""
    return tuple(b for b in BACKENDS if b in _REGISTRY[op])


def requested_backend(backend: Optional[str] = None) -> str:
    """The backend the caller asked for: ``backend`` if given, else ``$FLOWFM_BACKEND``, else ``"auto"``."""
    name = backend if backend is not None else os.environ.get("FLOWFM_BACKEND", "auto")
    name = name.strip().lower()
    if name not in _VALID_REQUESTS:
        source = "backend=" if backend is not None else "FLOWFM_BACKEND="
        raise ValueError(f"{source}{name!r} is not a backend; expected one of {_VALID_REQUESTS}")
    return name


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _triton_import_error() -> Optional[str]:
    if importlib.util.find_spec("triton") is None:
        return "the 'triton' package is not installed (pip install triton; Linux only)"
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception as exc:  # a broken triton install must not break flowfm
        return f"importing triton failed: {exc!r}"
    return None


def backend_unavailable_reason(backend: str, device: torch.device | str = "cpu") -> Optional[str]:
    """``None`` if ``backend`` can run on ``device``, else a one-line reason."""
    device = torch.device(device)
    if backend == "eager":
        return None
    if backend == "triton":
        reason = _triton_import_error()
        if reason:
            return reason
        if device.type == "cuda":
            return None
        if device.type == "cpu" and triton_interpreting():
            return None
        return (f"triton kernels need a CUDA tensor (got device {device.type!r}); set TRITON_INTERPRET=1 to run "
                "them on CPU through the Triton interpreter (slow, for testing)")
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend needs a CUDA tensor (got device {device.type!r})"
        from flowfm_kernels.cuda import loader  # local: keeps import light

        return loader.unavailable_reason()
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def _load(path: str) -> Callable:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Resolution:
    """What a backend request runs for one op on one device.

    ``backend``: the implementation that runs, or None when the request raises :class:`BackendUnavailableError`
    (with the message ``error``). ``reason``: why, in a few words, without the op's name (so that ops resolved
    alike read alike). ``skipped``: ``(backend, reason)`` of every backend ``auto`` tried first and could not use
    (:func:`resolve` warns about each once). ``note``: what ``backend``'s implementation of the op runs, where it
    mixes libraries (see :func:`implementation_notes`)."""

    op: str
    request: str
    device: str
    backend: Optional[str]
    reason: str
    skipped: tuple[tuple[str, str], ...] = ()
    error: Optional[str] = None
    note: Optional[str] = None


def explain(op: str, backend: Optional[str], device: torch.device | str) -> Resolution:
    """:func:`resolve` without raising or warning: which implementation runs ``op`` on ``device`` and why."""
    if op not in _REGISTRY:
        raise KeyError(f"no op named {op!r}; registered: {registered_ops()}")
    device = torch.device(device)
    impls = _REGISTRY[op]
    notes = _NOTES.get(op, {})
    request = requested_backend(backend)
    skipped: list[tuple[str, str]] = []

    def chosen(name: str, why: str) -> Resolution:
        if skipped:
            why += "; unavailable: " + "; ".join(f"{b} ({r})" for b, r in skipped)
        return Resolution(op, request, device.type, name, why, tuple(skipped), note=notes.get(name))

    def refused(why: str, error: str) -> Resolution:
        return Resolution(op, request, device.type, None, why, (), error)

    if request != "auto":
        if request not in impls:
            return refused(f"no {request!r} implementation (has: {', '.join(sorted(impls))})",
                           f"op {op!r} has no {request!r} implementation (has: {sorted(impls)})")
        reason = backend_unavailable_reason(request, device)
        if reason:
            return refused(f"unavailable: {reason}", f"backend {request!r} for op {op!r} is unavailable: {reason}")
        return chosen(request, "requested")
    if device.type != "cuda":
        return chosen("eager", f"auto runs eager on {device.type} tensors")
    preference = _CUDA_PREFERENCE[op]
    for candidate in preference:
        reason = backend_unavailable_reason(candidate, device)
        if reason is None:
            return chosen(candidate, "first available of " + " > ".join(preference))
        skipped.append((candidate, reason))
    return chosen("eager", "no GPU backend available")


def resolve(op: str, backend: Optional[str], device: torch.device | str) -> str:
    """The concrete backend that runs ``op`` for a tensor on ``device`` given the user's request."""
    res = explain(op, backend, device)
    if res.backend is None:
        raise BackendUnavailableError(res.error)
    for candidate, reason in res.skipped:
        if (op, candidate) not in _warned:
            _warned.add((op, candidate))
            warnings.warn(f"flowfm: backend {candidate!r} for op {op!r} unavailable ({reason}); falling back",
                          RuntimeWarning, stacklevel=3)
    return res.backend


def explain_all(device: torch.device | str) -> list[Resolution]:
    """:func:`explain` for every registered op and every request (``auto`` and each backend) on ``device``."""
    return [explain(op, request, device) for op in registered_ops() for request in _VALID_REQUESTS]


def implementation(op: str, backend: Optional[str], device: torch.device | str) -> Callable:
    """The callable implementing ``op`` for ``device`` under the request ``backend``."""
    return _load(_REGISTRY[op][resolve(op, backend, device)])


def available_backends(device: torch.device | str = "cpu") -> dict[str, Optional[str]]:
    """``{backend: None if available else reason}`` for ``device``."""
    return {b: backend_unavailable_reason(b, device) for b in BACKENDS}
