"""Small helpers shared by FlowFM's Triton kernels (private: not part of the public API).

What lives here, and only this:

* **Interpreter detection.** ``TRITON_INTERPRET=1`` makes ``@triton.jit`` build interpreted kernels that run on CPU
  tensors. Triton reads the variable when a kernel is *decorated* (module import), while
  :mod:`flowfm_kernels.dispatch` reads it at *call* time; :func:`check_launchable` turns a mismatch between the two
  into a clear error instead of a crash inside Triton.
* **Autotune configs.** :func:`autotune_configs` returns the GPU config list, or one config under the interpreter
  (the interpreter would otherwise "benchmark" every config on CPU); :func:`elementwise_autotune` is the ready-made
  decorator for memory-bound kernels with a ``BLOCK`` meta-parameter (prunes blocks longer than the row; names the
  in-place outputs the tuner must restore between its timing runs).
* **Tuned (reduction) kernels.** :func:`tuned_autotune` wraps ``@triton.autotune`` for the conv / GroupNorm
  kernels: the key gains ``TUNE_KEY`` (:func:`tune_key`: a batch-size bucket and the determinism flag), an early
  prune drops configs that cannot fit (shared memory, register pressure; :func:`select_configs`), and in
  deterministic mode (:func:`deterministic_requested`) only the first surviving config is kept, so the config, and
  with it every reduction's summation order, is a fixed function of the shape. Tuning results are cached on disk
  across processes where Triton supports it (``cache_results``, Triton >= 3.2).
* **Grids.** :func:`fold_grid` puts the batch on grid axis 0 (limit 2**31 - 1) instead of axis 2 (limit 65,535).
* **Layout of (B, C, L) operands.** :class:`RowLayout` / :func:`row_layouts` describe each operand as per-sample
  rows of ``N = C * L`` elements: kernels index element ``n`` of sample ``b`` at ``b * sb + n * sn`` when every
  operand's row is uniformly strided (``FLAT``; ``sn`` is usually 1, which Triton specialises to a constant so the
  loads vectorise), else at ``b * sb + (n // L) * sc + (n % L) * sl`` (scalar loads). No hidden ``.contiguous()``
  copies. ``VEC`` is the largest power of two (<= 16) dividing N and every sample stride; :func:`row_tile` and
  :func:`sample_offsets` (``@triton.jit`` helpers) pass it to Triton's alignment analysis, so rows of e.g.
  ``N = 900`` fp32 elements still get 16-byte loads (checked in the PTX: ``ld.global.v4.b32``).
* **Launch hygiene.** :func:`check_launchable` (device / interpreter), :func:`check_float`, :func:`per_sample`
  ((B,) step sizes from tensors or numbers), :func:`device_guard` (launch on the tensors' GPU), and
  :func:`check_output`, which rejects outputs that overlap themselves or partially overlap an input (``out is x``,
  an exact alias, is allowed: elementwise kernels read and write each element in the same thread).

Importing this module imports Triton (so only the ``*/triton.py`` kernel modules import it; the dispatcher does not).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch
import triton
import triton.language as tl

from flowfm_kernels.dispatch import BackendUnavailableError

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` is set (read now; Triton itself reads it when a kernel is decorated)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


#: Whether the kernels decorated by modules importing this one are interpreted (decided at import, like Triton).
INTERPRETED_AT_IMPORT: bool = interpreting()


def autotune_configs(gpu_configs: Sequence[triton.Config], interpreter_config: triton.Config) -> list:
    """The configs for ``@triton.autotune``: ``gpu_configs`` on a GPU, only ``interpreter_config`` when interpreting
    (a single config also skips the autotuner's benchmarking entirely)."""
    return [interpreter_config] if INTERPRETED_AT_IMPORT else list(gpu_configs)


#: Memory-bound elementwise kernels over rows of N elements: one BLOCK-element tile per program.
ELEMENTWISE_GPU_CONFIGS = tuple(triton.Config({"BLOCK": block}, num_warps=warps)
                                for block, warps in ((512, 4), (1024, 4), (2048, 4), (2048, 8), (4096, 8)))
ELEMENTWISE_INTERPRETER_CONFIG = triton.Config({"BLOCK": 256}, num_warps=4)


def elementwise_autotune(key: Sequence[str], row_arg: str = "N", restore_value: Optional[Sequence[str]] = None):
    """``@triton.autotune`` for a kernel with a ``BLOCK`` meta-parameter tiling rows of ``row_arg`` elements.

    GPU: :data:`ELEMENTWISE_GPU_CONFIGS`, pruned to blocks no larger than the row needs; interpreter: one config.
    Name every output the kernel writes *in place of an input* in ``restore_value`` (the tuner runs the kernel
    several times on the first call for each key). Tuning launches benchmark runs, so do not let the first call
    for a new key happen inside CUDA-graph capture (warm up first, as capture requires anyway)."""

    def prune(configs, named_args, **kwargs):
        row = int(named_args[row_arg])
        limit = max(512, next_power_of_2(row))
        kept = [c for c in configs if c.kwargs["BLOCK"] <= limit]
        return kept or [min(configs, key=lambda c: c.kwargs["BLOCK"])]

    return triton.autotune(configs=autotune_configs(ELEMENTWISE_GPU_CONFIGS, ELEMENTWISE_INTERPRETER_CONFIG),
                           key=list(key), restore_value=list(restore_value) if restore_value else None,
                           prune_configs_by={"early_config_prune": prune})


#: CUDA grid limits: axis 0 up to 2**31 - 1 programs, axes 1 and 2 up to 65,535.
GRID_LIMITS = (2**31 - 1, 65535, 65535)

#: Shared memory one program may use on sm_90 (227 KB, the opt-in maximum per block).
SMEM_LIMIT_BYTES = 227 * 1024


def fold_grid(batch: int, tiles0: int, tiles1: int = 1) -> tuple[int, int, int]:
    """``(batch * tiles0, tiles1, 1)``: a grid whose axis 0 enumerates (sample, tile) as ``pid0 = b * tiles0 + t``
    (kernels recover ``b = pid0 // tiles0``). The batch never lands on axis 1 / 2, whose limit is 65,535 (a batch of
    100,000 windows is an ordinary sampling request). Raises ValueError if a limit is still exceeded."""
    grid = (int(batch) * int(tiles0), int(tiles1), 1)
    for axis, (n, limit) in enumerate(zip(grid, GRID_LIMITS)):
        if n > limit or n < 1:
            raise ValueError(f"grid {grid}: axis {axis} has {n} programs, CUDA allows 1..{limit} "
                             f"(batch {batch}, {tiles0} x {tiles1} tiles per sample)")
    return grid


def deterministic_requested() -> bool:
    """``FLOWFM_DETERMINISTIC=1`` or ``torch.use_deterministic_algorithms(True)``: pin the autotuned configs."""
    env = os.environ.get("FLOWFM_DETERMINISTIC", "0").strip().lower() not in ("", "0", "false", "no")
    return env or torch.are_deterministic_algorithms_enabled()


def tune_key(batch: int, pinned: Optional[bool] = None) -> int:
    """The ``TUNE_KEY`` argument of :func:`tuned_autotune` kernels: ``2 * log2_bucket(batch) + pinned`` (>= 2, so
    never the value 1 that Triton would specialise). Batches in one power-of-two bucket share a tuned config; the
    low bit separates the pinned (deterministic) choice from the timed one in the tuner's cache."""
    pinned = deterministic_requested() if pinned is None else pinned
    return 2 * log2_bucket(batch) + int(bool(pinned))


def select_configs(configs: Sequence[triton.Config], named_args: dict, meta: dict, fits=None) -> list:
    """The configs the tuner may time: those ``fits(config, named_args, meta)`` accepts (all if ``fits`` is None; the
    first config if none fits); in pinned mode (``TUNE_KEY`` odd) only the first of them, in list order. Lists are
    ordered so the first config is a sound default."""
    kept = [c for c in configs if fits is None or fits(c, named_args, meta)] or [configs[0]]
    if int(named_args.get("TUNE_KEY", meta.get("TUNE_KEY", 0))) & 1:
        kept = kept[:1]
    return kept


def _autotune_supports(name: str) -> bool:
    import inspect
    try:
        return name in inspect.signature(triton.autotune).parameters
    except (TypeError, ValueError):
        return False


def tuned_autotune(gpu_configs: Sequence[triton.Config], interpreter_config: triton.Config, key: Sequence[str],
                   fits=None, restore_value: Optional[Sequence[str]] = None):
    """``@triton.autotune`` for a kernel that takes a ``TUNE_KEY`` argument (:func:`tune_key`; declare it in
    ``do_not_specialize``): key = ``key`` + ``TUNE_KEY``; early prune :func:`select_configs` with ``fits``; outputs
    that may alias an input (``out=h``) named in ``restore_value`` (the tuner re-runs the kernel while timing).
    Interpreter: only ``interpreter_config`` (no tuning). GPU: tuning results cached on disk across processes when
    this Triton supports ``cache_results``."""

    def prune(configs, named_args, **meta):
        return select_configs(configs, named_args, meta, fits)

    extra = {"cache_results": True} if _autotune_supports("cache_results") else {}
    return triton.autotune(configs=autotune_configs(gpu_configs, interpreter_config), key=list(key) + ["TUNE_KEY"],
                           restore_value=list(restore_value) if restore_value else None,
                           prune_configs_by={"early_config_prune": prune}, **extra)


def dot_smem_bytes(num_stages: int, tile_elems: int, elem_bytes: int) -> int:
    """Upper bound on the shared memory of a software-pipelined ``tl.dot`` loop: ``num_stages`` buffers of every
    operand tile loaded per iteration (``tile_elems`` elements in all). Matches Triton's allocation for the 3-stage
    conv configs exactly (checked offline, bench/triton_offline.py)."""
    return int(num_stages) * int(tile_elems) * int(elem_bytes)


def hint_divisor(*values: int, cap: int = 16) -> int:
    """The largest power of two <= ``cap`` dividing every value: kernels rewrite a runtime stride or length ``s`` as
    ``(s // VEC) * VEC`` (value-preserving) so Triton's alignment analysis sees the divisibility and emits vector
    accesses (e.g. rows of L = 300 fp32 elements: VEC 4, 16-byte loads)."""
    vec = cap
    for v in values:
        vec = min(vec, pow2_divisor(v, cap))
    return vec


def check_launchable(*tensors: Optional[torch.Tensor]) -> torch.device:
    """All given tensors on one device that the kernels (as imported) can run on; returns that device.

    Raises :class:`~flowfm_kernels.dispatch.BackendUnavailableError` for CPU tensors without the interpreter, or when
    the kernels were imported without ``TRITON_INTERPRET=1`` (compiled kernels cannot take CPU tensors)."""
    present = [t for t in tensors if t is not None]
    devices = {t.device for t in present}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(str(d) for d in devices)}")
    device = devices.pop()
    if device.type == "cuda":
        return device
    if device.type != "cpu":
        raise BackendUnavailableError(f"triton kernels run on CUDA tensors, got device {device.type!r}")
    if not interpreting():
        raise BackendUnavailableError("triton kernels need CUDA tensors; CPU tensors run only under "
                                      "TRITON_INTERPRET=1 (the Triton interpreter, for tests)")
    if not INTERPRETED_AT_IMPORT:
        raise BackendUnavailableError("TRITON_INTERPRET=1 was set after the flowfm triton kernels were imported; "
                                      "Triton decides at import, so set it before importing them")
    return device


def device_guard(device: torch.device):
    """Context making ``device`` current for a launch (Triton launches on the current CUDA device and stream)."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def check_float(**tensors: Optional[torch.Tensor]) -> None:
    """Every given tensor is fp16/bf16/fp32/fp64 (kernels compute in fp32)."""
    for name, t in tensors.items():
        if t is not None and t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating tensor (fp16, bf16, fp32 or fp64), got {t.dtype}")


def per_sample(value, batch: int, device: torch.device, name: str = "dt") -> torch.Tensor:
    """``value`` as a (B,) tensor on ``device``: a (B,) tensor as is, a 0-d tensor or Python number broadcast
    (stride 0, no copy for tensors already on ``device``)."""
    if not isinstance(value, torch.Tensor):
        return torch.full((batch,), float(value), dtype=torch.float32, device=device)
    if value.device != device:
        raise ValueError(f"{name} is on {value.device}, the data on {device}")
    if value.dim() == 0:
        return value.reshape(1).expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"{name} must have shape (B,) = ({batch},), got {tuple(value.shape)}")
    return value


def pow2_divisor(value: int, cap: int = 16) -> int:
    """The largest power of two <= ``cap`` dividing ``value`` (``cap`` for 0)."""
    value = abs(int(value))
    if value == 0:
        return cap
    return min(cap, value & -value)


@dataclass(frozen=True)
class RowLayout:
    """Strides (in elements) of a (B, C, L) tensor seen as B rows of N = C*L elements.

    ``sb`` is 0 when B == 1; ``sn`` is the stride between consecutive row elements when the row is uniformly strided
    (``flat``), else ``None``; ``sc`` / ``sl`` are the raw channel / length strides for the general path."""
    sb: int
    sc: int
    sl: int
    sn: Optional[int]

    @property
    def flat(self) -> bool:
        return self.sn is not None

    def args(self, flat: bool) -> tuple[int, int, int]:
        """The three stride arguments a kernel takes for this operand: ``(sb, sn, 0)`` when ``flat`` (the
        operands' common path) else ``(sb, sc, sl)``."""
        return (self.sb, self.sn, 0) if flat else (self.sb, self.sc, self.sl)


def row_layout(t: torch.Tensor) -> RowLayout:
    if t.dim() != 3:
        raise ValueError(f"expected a (B, C, L) tensor, got shape {tuple(t.shape)}")
    B, C, L = t.shape
    sb, sc, sl = t.stride()
    if (C - 1) * sc + (L - 1) * sl >= 2**31:  # offsets within a sample are int32 in the kernels (b * sb is int64)
        raise ValueError(f"one sample of a tensor with shape {tuple(t.shape)} and strides {t.stride()} spans more "
                         "than 2**31 elements; the kernels index within a sample with 32-bit offsets")
    sb = 0 if B == 1 else sb
    sc = 0 if C == 1 else sc
    sl = 0 if L == 1 else sl
    if C == 1 and L == 1:
        sn = 1
    elif C == 1:
        sn = sl
    elif L == 1:
        sn = sc
    else:
        sn = sl if sc == L * sl else None
    return RowLayout(sb, sc, sl, sn)


def row_layouts(*tensors: Optional[torch.Tensor]) -> tuple[bool, int, list]:
    """``(flat, vec, layouts)`` for the given operands (``None`` entries get a zero-stride dummy layout):
    ``flat`` when every operand's rows are uniformly strided; ``vec`` the largest power of two (<= 16) dividing the
    row length N and every sample stride. Kernels hint both N and the sample offsets with it: without the hint on N
    the tail mask ``n < N`` has unknown constancy and Triton emits scalar loads even for contiguous rows."""
    present = [t for t in tensors if t is not None]
    layouts = [row_layout(t) if t is not None else RowLayout(0, 0, 0, 0) for t in tensors]
    flat = all(lay.flat for lay in layouts)
    vec = pow2_divisor(present[0].shape[1] * present[0].shape[2]) if present else 16
    for lay in layouts:
        vec = min(vec, pow2_divisor(lay.sb))
    return flat, vec, layouts


def stride_args(layouts: Iterable[RowLayout], flat: bool) -> list[int]:
    """The flattened stride arguments of ``layouts`` (three per operand), see :meth:`RowLayout.args`."""
    out: list[int] = []
    for lay in layouts:
        out.extend(lay.args(flat))
    return out


def _memory_span(t: torch.Tensor) -> tuple[int, int]:
    if t.numel() == 0:
        return t.data_ptr(), t.data_ptr()
    extent = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride())) + 1
    return t.data_ptr(), t.data_ptr() + extent * t.element_size()


def check_output(out: torch.Tensor, like: torch.Tensor, **inputs: Optional[torch.Tensor]) -> None:
    """``out`` has ``like``'s shape and device, is floating, has no internal overlap, and either is exactly an input
    (same memory, strides and dtype: an in-place update) or does not overlap any input."""
    if out.shape != like.shape:
        raise ValueError(f"out must have shape {tuple(like.shape)}, got {tuple(out.shape)}")
    if out.device != like.device:
        raise ValueError(f"out is on {out.device}, the inputs on {like.device}")
    check_float(out=out)
    if torch.compiler.is_compiling():  # traced (fake) tensors have no memory; functionalisation handles aliasing
        return
    if torch._debug_has_internal_overlap(out) == 1:  # 1 = definitely overlapping (e.g. expanded)
        raise ValueError("out has internal overlap (an expanded or otherwise self-aliasing view)")
    o_lo, o_hi = _memory_span(out)
    for name, t in inputs.items():
        if t is None or t.numel() == 0 or out.numel() == 0:
            continue
        if t.data_ptr() == out.data_ptr() and t.stride() == out.stride() and t.dtype == out.dtype:
            continue  # exact alias: in-place update
        lo, hi = _memory_span(t)
        if lo < o_hi and o_lo < hi and t.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
            raise ValueError(f"out partially overlaps input {name!r} (only out being exactly that tensor, "
                             "an in-place update, is supported)")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def log2_bucket(n: int) -> int:
    """A coarse size bucket (bit length) for autotune keys, so nearby batch sizes share a tuned config."""
    return max(1, int(n)).bit_length()


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


@triton.jit
def vec_multiple(x, VEC: tl.constexpr):
    """``x`` rewritten as ``(x // VEC) * VEC``: the same value when the host guarantees VEC | x, and a form from
    which Triton proves x divisible by VEC (``tl.multiple_of`` is a no-op on a kernel argument), so that row starts
    and lengths computed from it are known aligned and loads / stores vectorise."""
    if VEC > 1:
        x = (x // VEC) * VEC
    return x


@triton.jit
def row_tile(N, BLOCK: tl.constexpr, VEC: tl.constexpr):
    """``(b, n, mask, N)`` of this program for a 1-D grid of ``B * ceil(N / BLOCK)`` programs (pid = b * blocks +
    block): sample index ``b`` (int64), the tile's element indices ``n``, the tail mask, and N carrying the
    divisibility hint ``VEC`` (which the mask needs for vector loads)."""
    N = vec_multiple(N, VEC)
    nblk = tl.cdiv(N, BLOCK)
    pid = tl.program_id(0)
    b = pid // nblk
    n = (pid - b * nblk) * BLOCK + tl.arange(0, BLOCK)
    return b.to(tl.int64), n, n < N, N


@triton.jit
def sample_offsets(b, n, L, sb, s1, s2, FLAT: tl.constexpr, VEC: tl.constexpr):
    """Element offsets of row elements ``n`` (a block) of sample ``b`` (an int64 scalar), for an operand whose
    stride arguments came from :meth:`RowLayout.args`: ``(sb, sn, _)`` when ``FLAT`` else ``(sb, sc, sl)``."""
    base = b * sb
    if VEC > 1:
        base = tl.multiple_of(base, VEC)
    if FLAT:
        return base + n * s1
    else:
        c = n // L
        return base + c * s1 + (n - c * L) * s2


__all__ = [
    "interpreting", "INTERPRETED_AT_IMPORT", "device_guard", "autotune_configs", "ELEMENTWISE_GPU_CONFIGS",
    "ELEMENTWISE_INTERPRETER_CONFIG", "elementwise_autotune", "check_launchable", "check_float", "per_sample",
    "pow2_divisor", "RowLayout", "row_layout", "row_layouts", "stride_args", "check_output", "cdiv",
    "next_power_of_2", "log2_bucket", "dtype_bytes", "vec_multiple", "row_tile", "sample_offsets", "GRID_LIMITS",
    "SMEM_LIMIT_BYTES", "fold_grid", "deterministic_requested", "tune_key", "select_configs", "tuned_autotune",
    "dot_smem_bytes", "hint_divisor",
]
