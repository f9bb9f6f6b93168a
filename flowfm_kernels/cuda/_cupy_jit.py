"""The NVRTC JIT build of ``csrc/*.cu`` through CuPy, exposing the same functions as ``flowfm_kernels._C``.

When the compiled extension is absent, :class:`JitKernels` compiles the very same sources (their kernels only: the
host launchers sit behind ``#ifndef __CUDACC_RTC__``) with ``cupy.RawModule`` and NVRTC, one name expression per
template instantiation, and launches them on the caller's stream through ``cupy.cuda.ExternalStream``. CuPy caches
the compiled module on disk (``~/.cupy/kernel_cache``), so the compile cost (seconds) is paid once per machine.

The launch plans (:func:`gn_fwd_plan`, :func:`fm_loss_chunks`, ...) mirror ``csrc/flowfm_api.h`` line by line; the
tests compare both when the extension is built. This module imports CuPy only inside :class:`JitKernels`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

# ------------------------------------------------------------------------------------------------- sources
SOURCE_FILES = ("gn_film_silu.cu", "fm_loss.cu", "ode_steps.cu")
HEADER_FILES = ("flowfm_common.cuh",)
# dtype code -> C++ storage type (index = code, as in csrc/flowfm_api.h)
CXX_TYPES = ("float", "__half", "__nv_bfloat16")
DTYPE_FLOAT32, DTYPE_FLOAT16, DTYPE_BFLOAT16 = 0, 1, 2
REDUCTION_MEAN, REDUCTION_PER_SAMPLE = 0, 1
_ITEMSIZE = (4, 2, 2)

# constants of csrc/flowfm_api.h and csrc/flowfm_common.cuh
THREADS = 256
WARP = 32
VEC = 4
SMEM_BUDGET_BYTES = 46 * 1024
MAX_GRID_X = 65535
MAX_GRID_Y = 65535
GN_MIN_CHUNK = 2048
GN_FUSED_MAX_ELEMS = 16384
FM_LOSS_CHUNK = 4096
GN_PARAM_ROWS = 32
GN_PARAM_TILE = 32
_MAX_GROUP_ELEMS = 1 << 30
_MAX_BLOCKS = 2147483647


def candidate_source_dirs() -> list[Path]:
    """Where the .cu sources may be: shipped in the package (regular install), then the repository (editable)."""
    package_dir = Path(__file__).resolve().parents[1]  # flowfm_kernels/
    return [package_dir / "csrc", package_dir.parent / "csrc"]


def find_source_dir() -> Optional[Path]:
    """The first candidate directory holding every source and header the JIT build needs."""
    for d in candidate_source_dirs():
        if all((d / name).is_file() for name in SOURCE_FILES + HEADER_FILES):
            return d
    return None


def jit_source(source_dir: Path) -> str:
    """The kernel sources concatenated (each under a #line marker, so NVRTC errors name the right file)."""
    parts = []
    for name in SOURCE_FILES:
        text = (Path(source_dir) / name).read_text(encoding="utf-8")
        parts.append(f'#line 1 "{name}"\n{text}\n')
    return "".join(parts)


def name_expressions() -> list[str]:
    """Every kernel instantiation the launchers use (the same set nvcc instantiates for _C)."""
    names = []
    for t in CXX_TYPES:
        names += [f"flowfm::gn_fwd_fused_kernel<{t}>", f"flowfm::gn_partial_stats_kernel<{t}>",
                  f"flowfm::gn_apply_kernel<{t}>", f"flowfm::gn_bwd_rows_kernel<{t}>",
                  f"flowfm::gn_bwd_dh_kernel<{t}>", f"flowfm::interpolate_kernel<{t}>",
                  f"flowfm::guidance_combine_kernel<{t}>"]
    names += ["flowfm::gn_finalize_stats_kernel", "flowfm::gn_bwd_params_partial_kernel",
              "flowfm::gn_bwd_params_finalize_kernel", "flowfm::fm_loss_finalize_kernel"]
    for a in CXX_TYPES:
        for b in CXX_TYPES:
            names += [f"flowfm::fm_loss_partial_kernel<{a}, {b}>", f"flowfm::euler_step_kernel<{a}, {b}>",
                      f"flowfm::heun_correct_kernel<{a}, {b}>", f"flowfm::rk4_combine_kernel<{a}, {b}>"]
    return names


def cuda_include_dirs() -> list[str]:
    """``<CUDA root>/include`` when a toolkit is installed (cuda_fp16.h / cuda_bf16.h for NVRTC), else nothing."""
    from flowfm_kernels.cuda._build import find_cuda_root

    root = find_cuda_root()
    return [os.path.join(root, "include")] if root else []


def jit_options(source_dir: Path, extra_include_dirs: Sequence[str] = ()) -> tuple[str, ...]:
    opts = ["-std=c++17", f"-I{Path(source_dir)}"]
    opts += [f"-I{d}" for d in extra_include_dirs]
    return tuple(opts)


# ------------------------------------------------------------------------------------------------- plans
def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def gn_chunking(BG: int, N: int, num_sms: int) -> tuple[int, int]:
    """(chunks per group, elements per chunk): mirrors flowfm::gn_chunking."""
    target_blocks = 4 * (num_sms if num_sms > 0 else 1)
    max_chunks = max(_ceil_div(N, GN_MIN_CHUNK), 1)
    c = _ceil_div(target_blocks, BG if BG > 0 else 1)
    c = min(max(c, 1), max_chunks)
    e = max(_ceil_div(_ceil_div(N, c), 4) * 4, 4)
    return max(_ceil_div(N, e), 1), e


def gn_fwd_plan(B: int, C: int, L: int, G: int, num_sms: int) -> dict:
    """Launch plan of gn_film_silu_fwd: mirrors flowfm::gn_fwd_plan (see csrc/flowfm_api.h)."""
    if B <= 0 or C <= 0 or L <= 0 or G <= 0 or C % G or num_sms <= 0:
        raise ValueError("gn_fwd_plan: need positive B, C, L, G, num_sms with C % G == 0")
    Cg = C // G
    N = Cg * L
    BG = B * G
    coef_bytes = _ceil_div(2 * Cg, 4) * 4 * 4
    fused_ok = coef_bytes <= SMEM_BUDGET_BYTES
    cache = fused_ok and coef_bytes + N * 4 <= SMEM_BUDGET_BYTES
    chunks, chunk_elems = gn_chunking(BG, N, num_sms)
    fused = fused_ok and (chunks == 1 or N <= GN_FUSED_MAX_ELEMS or BG >= 2 * num_sms)
    if fused:
        smem, ws = coef_bytes + (N * 4 if cache else 0), 0
    else:
        cache, smem, ws = False, 0, BG * chunks * 3 * 4
    return {"fused": fused, "cache": cache, "chunks": chunks, "chunk_elems": chunk_elems, "smem_bytes": smem,
            "workspace_bytes": ws}


def gn_param_chunks(B: int) -> int:
    """Batch chunks of the dgamma / dbeta reduction (mirrors flowfm::gn_param_chunks)."""
    return _ceil_div(B, GN_PARAM_ROWS) if B > 0 else 1


def gn_param_tiles(C: int) -> int:
    return _ceil_div(C, GN_PARAM_TILE) if C > 0 else 1


def gn_bwd_workspace_bytes(B: int, C: int) -> int:
    """S1, S2 (B, C), then the (chunk, C, 2) dgamma / dbeta partials, float32: mirrors flowfm_api.h."""
    return (2 * B * C + 2 * gn_param_chunks(B) * C) * 4


def fm_loss_chunks(N: int) -> int:
    return max(_ceil_div(N, FM_LOSS_CHUNK), 1)


def fm_loss_workspace_bytes(B: int, N: int) -> int:
    return B * fm_loss_chunks(N) * 4


def per_sample_grid(units: int, B: int) -> tuple[int, int, int]:
    return (min(max(_ceil_div(units, THREADS), 1), MAX_GRID_X), min(B, MAX_GRID_Y), 1)


# ------------------------------------------------------------------------------------------------- checks
def _fail(fn: str, what: str):
    raise ValueError(f"flowfm_kernels JIT.{fn}: {what}")


def _require(ok: bool, fn: str, what: str) -> None:
    if not ok:
        _fail(fn, what)


def _require_ptr(p: int, fn: str, name: str) -> None:
    if not p:
        _fail(fn, f"{name} is a null pointer")


def _require_positive(v: int, fn: str, name: str) -> None:
    if v <= 0:
        _fail(fn, f"{name} must be positive, got {v}")


def _require_dtype(code: int, fn: str, name: str) -> None:
    if code not in (0, 1, 2):
        _fail(fn, f"{name} = {code} is not a dtype code (0 = float32, 1 = float16, 2 = bfloat16)")


def _aligned(p: int, nbytes: int) -> bool:
    return p % nbytes == 0


def _validate_gn_shape(fn: str, B: int, C: int, L: int, G: int) -> None:
    for v, name in ((B, "B"), (C, "C"), (L, "L"), (G, "num_groups")):
        _require_positive(v, fn, name)
    _require(C % G == 0, fn, f"channels ({C}) must be divisible by num_groups ({G})")
    _require(C <= _MAX_GROUP_ELEMS and (C // G) * L <= _MAX_GROUP_ELEMS, fn,
             f"a group of (C / num_groups) * L = {(C // G) * L} elements is too large")
    _require(B * C <= _MAX_BLOCKS * 8 and B * G <= _MAX_BLOCKS, fn, "too many rows / groups for one launch")


# ------------------------------------------------------------------------------------------------- module
class JitKernels:
    """Same functions, arguments and errors as ``flowfm_kernels._C``, backed by a CuPy RawModule (NVRTC)."""

    IMPLEMENTATION = "jit"
    DTYPE_FLOAT32, DTYPE_FLOAT16, DTYPE_BFLOAT16 = DTYPE_FLOAT32, DTYPE_FLOAT16, DTYPE_BFLOAT16
    REDUCTION_MEAN, REDUCTION_PER_SAMPLE = REDUCTION_MEAN, REDUCTION_PER_SAMPLE
    SMEM_BUDGET_BYTES = SMEM_BUDGET_BYTES
    FM_LOSS_CHUNK = FM_LOSS_CHUNK

    gn_fwd_plan = staticmethod(gn_fwd_plan)
    gn_bwd_workspace_bytes = staticmethod(gn_bwd_workspace_bytes)
    fm_loss_chunks = staticmethod(fm_loss_chunks)
    fm_loss_workspace_bytes = staticmethod(fm_loss_workspace_bytes)

    def __init__(self, source_dir: Path, extra_include_dirs: Sequence[str] = (), cupy_module=None):
        """Builds the RawModule (CuPy compiles it lazily); ``cupy_module`` stands in for cupy (tests: CPU emulation)."""
        if cupy_module is None:
            import cupy as cupy_module  # ImportError is the caller's "cupy missing" reason
        import numpy as np

        self._cp = cupy_module
        self._np = np
        self.source_dir = Path(source_dir)
        self.options = jit_options(self.source_dir, extra_include_dirs)
        self._module = cupy_module.RawModule(code=jit_source(self.source_dir), options=self.options,
                                             name_expressions=name_expressions())
        self._kernels: dict[tuple[int, str], object] = {}
        self._streams: dict[tuple[int, int], object] = {}
        self._sms: dict[int, int] = {}

    # -- infrastructure
    def compile(self) -> None:
        """Compile (or load from CuPy's cache) and fetch every kernel on the current device."""
        with self._device() as dev:
            for name in name_expressions():
                self._kernel(dev, name)

    def _current_device_index(self) -> int:
        import torch

        return torch.cuda.current_device()

    def _device(self):
        return self._cp.cuda.Device(self._current_device_index())

    def _kernel(self, dev, name: str):
        key = (dev.id, name)
        k = self._kernels.get(key)
        if k is None:
            k = self._module.get_function(name)
            self._kernels[key] = k
        return k

    def _stream(self, dev, ptr: int):
        key = (dev.id, ptr)
        s = self._streams.get(key)
        if s is None:
            s = self._cp.cuda.ExternalStream(ptr) if ptr else self._cp.cuda.Stream.null
            self._streams[key] = s
        return s

    def _launch(self, dev, stream, name: str, grid, args, shared_mem: int = 0) -> None:
        kernel = self._kernel(dev, name)
        try:
            with stream:  # the caller's (torch's current) stream becomes CuPy's current stream for the launch
                kernel(tuple(grid), (THREADS,), tuple(args), shared_mem=int(shared_mem))
        except Exception as exc:  # noqa: BLE001 - CUDA driver errors from CuPy
            raise RuntimeError(f"flowfm_kernels JIT: launching {name} failed: {exc}") from exc

    def _p(self, ptr: int):
        return self._np.uint64(ptr)

    def _i32(self, v: int):
        return self._np.int32(v)

    def _i64(self, v: int):
        return self._np.int64(v)

    def _f32(self, v: float):
        return self._np.float32(v)

    # -- device queries
    def current_device_sm_count(self) -> int:
        with self._device() as dev:
            sms = self._sms.get(dev.id)
            if sms is None:
                sms = max(int(dev.attributes["MultiProcessorCount"]), 1)
                self._sms[dev.id] = sms
            return sms

    def gn_fwd_workspace_bytes(self, B: int, C: int, L: int, G: int) -> int:
        _validate_gn_shape("gn_fwd_workspace_bytes", B, C, L, G)
        return gn_fwd_plan(B, C, L, G, self.current_device_sm_count())["workspace_bytes"]

    # -- GroupNorm + FiLM + SiLU
    def gn_film_silu_fwd(self, h, gamma, beta, scale, shift, y, mean, rstd, workspace, workspace_bytes, B, C, L, G,
                         eps, dtype, stream) -> None:
        fn = "gn_film_silu_fwd"
        _validate_gn_shape(fn, B, C, L, G)
        _require_dtype(dtype, fn, "dtype")
        for p, name in ((h, "h"), (y, "y"), (mean, "mean"), (rstd, "rstd")):
            _require_ptr(p, fn, name)
        _require(eps >= 0.0, fn, "eps must be >= 0")
        plan = gn_fwd_plan(B, C, L, G, self.current_device_sm_count())
        _require(workspace_bytes >= plan["workspace_bytes"], fn,
                 f"workspace of {workspace_bytes} bytes is smaller than the {plan['workspace_bytes']} bytes "
                 "gn_fwd_workspace_bytes() asks for")
        if plan["workspace_bytes"] > 0:
            _require_ptr(workspace, fn, "workspace")
        _require(B * G * plan["chunks"] <= _MAX_BLOCKS, fn, "too many blocks")
        vb = VEC * _ITEMSIZE[dtype]
        N = (C // G) * L
        vec = int(N % VEC == 0 and _aligned(h, vb) and _aligned(y, vb))
        t = CXX_TYPES[dtype]
        p, i32, i64, f32 = self._p, self._i32, self._i64, self._f32
        params = (p(gamma), p(beta), p(scale), p(shift))
        with self._device() as dev:
            s = self._stream(dev, stream)
            if plan["fused"]:
                self._launch(dev, s, f"flowfm::gn_fwd_fused_kernel<{t}>", (B * G,),
                             (p(h), *params, p(y), p(mean), p(rstd), i32(C), i32(L), i32(G), f32(eps),
                              i32(int(plan["cache"])), i32(vec)), plan["smem_bytes"])
            else:
                blocks = B * G * plan["chunks"]
                ce, nc = i32(plan["chunk_elems"]), i32(plan["chunks"])
                self._launch(dev, s, f"flowfm::gn_partial_stats_kernel<{t}>", (blocks,),
                             (p(h), p(workspace), i32(N), ce, nc, i32(vec)))
                self._launch(dev, s, "flowfm::gn_finalize_stats_kernel", (_ceil_div(B * G, THREADS),),
                             (p(workspace), p(mean), p(rstd), i64(B * G), nc, f32(eps)))
                self._launch(dev, s, f"flowfm::gn_apply_kernel<{t}>", (blocks,),
                             (p(h), *params, p(mean), p(rstd), p(y), i32(C), i32(L), i32(G), ce, nc, i32(vec)))

    def gn_film_silu_bwd(self, dy, h, gamma, beta, scale, shift, mean, rstd, dh, dgamma, dbeta, dscale, dshift,
                         workspace, workspace_bytes, B, C, L, G, dtype, stream) -> None:
        fn = "gn_film_silu_bwd"
        _validate_gn_shape(fn, B, C, L, G)
        _require_dtype(dtype, fn, "dtype")
        for p, name in ((dy, "dy"), (h, "h"), (mean, "mean"), (rstd, "rstd"), (workspace, "workspace")):
            _require_ptr(p, fn, name)
        need = gn_bwd_workspace_bytes(B, C)
        _require(workspace_bytes >= need, fn, f"workspace of {workspace_bytes} bytes is smaller than the {need} "
                 "bytes gn_bwd_workspace_bytes() asks for")
        N = (C // G) * L
        vb = VEC * _ITEMSIZE[dtype]
        ptrs_aligned = _aligned(dy, vb) and _aligned(h, vb) and (dh == 0 or _aligned(dh, vb))
        vec_rows = int(L % VEC == 0 and ptrs_aligned)
        vec_groups = int(N % VEC == 0 and ptrs_aligned)
        chunks, chunk_elems = gn_chunking(B * G, N, self.current_device_sm_count())
        _require(B * G * chunks <= _MAX_BLOCKS, fn, "too many blocks")
        t = CXX_TYPES[dtype]
        p, i32, i64 = self._p, self._i32, self._i64
        s1, s2 = workspace, workspace + B * C * 4
        params = (p(gamma), p(beta), p(scale), p(shift))
        with self._device() as dev:
            s = self._stream(dev, stream)
            rows_per_block = THREADS // WARP
            self._launch(dev, s, f"flowfm::gn_bwd_rows_kernel<{t}>", (_ceil_div(B * C, rows_per_block),),
                         (p(dy), p(h), *params, p(mean), p(rstd), p(s1), p(s2), p(dscale), p(dshift), i64(B * C),
                          i32(C), i32(L), i32(G), i32(vec_rows)))
            if dh:
                self._launch(dev, s, f"flowfm::gn_bwd_dh_kernel<{t}>", (B * G * chunks,),
                             (p(dy), p(h), *params, p(mean), p(rstd), p(s1), p(s2), p(dh), i32(C), i32(L), i32(G),
                              i32(chunk_elems), i32(chunks), i32(vec_groups)))
            if dgamma or dbeta:
                chunks_b = gn_param_chunks(B)
                part = s2 + B * C * 4
                self._launch(dev, s, "flowfm::gn_bwd_params_partial_kernel", (chunks_b * gn_param_tiles(C),),
                             (p(s1), p(s2), p(scale), p(part), i64(B), i32(C), i32(GN_PARAM_ROWS)))
                self._launch(dev, s, "flowfm::gn_bwd_params_finalize_kernel", (_ceil_div(C, THREADS),),
                             (p(part), p(dgamma), p(dbeta), i32(C), i64(chunks_b)))

    # -- flow-matching loss and interpolation
    def fm_loss_fwd(self, v, x0, x1, grad, loss, workspace, workspace_bytes, B, N, sigma_min, reduction, dtype_v,
                    dtype_x, stream) -> None:
        fn = "fm_loss_fwd"
        _require_positive(B, fn, "B")
        _require_positive(N, fn, "N (= C * L)")
        _require_dtype(dtype_v, fn, "dtype_v")
        _require_dtype(dtype_x, fn, "dtype_x")
        _require(reduction in (REDUCTION_MEAN, REDUCTION_PER_SAMPLE), fn,
                 f"reduction code {reduction} is not 0 (mean) or 1 (per_sample)")
        for p, name in ((v, "v"), (x0, "x0"), (x1, "x1"), (loss, "loss"), (workspace, "workspace")):
            _require_ptr(p, fn, name)
        need = fm_loss_workspace_bytes(B, N)
        _require(workspace_bytes >= need, fn, f"workspace of {workspace_bytes} bytes is smaller than the {need} "
                 "bytes fm_loss_workspace_bytes() asks for")
        chunks = fm_loss_chunks(N)
        _require(chunks <= MAX_GRID_X, fn, f"a sample of N = {N} elements is too large")
        vec = int(N % VEC == 0 and _aligned(v, VEC * _ITEMSIZE[dtype_v]) and _aligned(x0, VEC * _ITEMSIZE[dtype_x])
                  and _aligned(x1, VEC * _ITEMSIZE[dtype_x]) and _aligned(grad, VEC * 4))
        per_sample = reduction == REDUCTION_PER_SAMPLE
        grad_scale = 2.0 / (float(N) if per_sample else float(B) * float(N))
        p, i32, i64, f32 = self._p, self._i32, self._i64, self._f32
        with self._device() as dev:
            s = self._stream(dev, stream)
            name = f"flowfm::fm_loss_partial_kernel<{CXX_TYPES[dtype_v]}, {CXX_TYPES[dtype_x]}>"
            self._launch(dev, s, name, (chunks, min(B, MAX_GRID_Y)),
                         (p(v), p(x0), p(x1), p(grad), p(workspace), i64(B), i64(N), i32(FM_LOSS_CHUNK),
                          f32(1.0 - sigma_min), f32(grad_scale), i32(vec)))
            self._launch(dev, s, "flowfm::fm_loss_finalize_kernel", (1,),
                         (p(workspace), p(loss), i64(B), i32(chunks), i64(N), i32(int(per_sample))))

    def interpolate(self, x0, x1, t, out, B, N, sigma_min, dtype, stream) -> None:
        fn = "interpolate"
        _require_positive(B, fn, "B")
        _require_positive(N, fn, "N (= C * L)")
        _require_dtype(dtype, fn, "dtype")
        for p, name in ((x0, "x0"), (x1, "x1"), (t, "t"), (out, "out")):
            _require_ptr(p, fn, name)
        vb = VEC * _ITEMSIZE[dtype]
        vec = int(N % VEC == 0 and _aligned(x0, vb) and _aligned(x1, vb) and _aligned(out, vb))
        p = self._p
        with self._device() as dev:
            self._launch(dev, self._stream(dev, stream), f"flowfm::interpolate_kernel<{CXX_TYPES[dtype]}>",
                         per_sample_grid(N // VEC if vec else N, B),
                         (p(x0), p(x1), p(t), p(out), self._i64(B), self._i64(N), self._f32(1.0 - sigma_min),
                          self._i32(vec)))

    # -- ODE steps
    def _step_checks(self, fn, B, N, dtype_x, dtype_v, dt, x_like, v_like, optional_v=()):
        _require_positive(B, fn, "B")
        _require_positive(N, fn, "N (= C * L)")
        _require_dtype(dtype_x, fn, "dtype_x")
        _require_dtype(dtype_v, fn, "dtype_v")
        _require_ptr(dt, fn, "dt")
        vx, vv = VEC * _ITEMSIZE[dtype_x], VEC * _ITEMSIZE[dtype_v]
        aligned = True
        for ptr, name in x_like:
            _require_ptr(ptr, fn, name)
            aligned = aligned and _aligned(ptr, vx)
        for ptr, name in v_like:
            _require_ptr(ptr, fn, name)
            aligned = aligned and _aligned(ptr, vv)
        for ptr in optional_v:
            aligned = aligned and (ptr == 0 or _aligned(ptr, vv))
        return int(N % VEC == 0 and aligned)

    def euler_step(self, x, v, v_null, dt, out, B, N, guidance, dtype_x, dtype_v, stream) -> None:
        vec = self._step_checks("euler_step", B, N, dtype_x, dtype_v, dt, ((x, "x"), (out, "out")), ((v, "v"),),
                                (v_null,))
        p = self._p
        with self._device() as dev:
            self._launch(dev, self._stream(dev, stream),
                         f"flowfm::euler_step_kernel<{CXX_TYPES[dtype_x]}, {CXX_TYPES[dtype_v]}>",
                         per_sample_grid(N // VEC if vec else N, B),
                         (p(x), p(v), p(v_null), p(dt), p(out), self._i64(B), self._i64(N), self._f32(guidance),
                          self._i32(vec)))

    def heun_correct(self, x, v1, v2, v1_null, v2_null, dt, out, B, N, guidance, dtype_x, dtype_v, stream) -> None:
        vec = self._step_checks("heun_correct", B, N, dtype_x, dtype_v, dt, ((x, "x"), (out, "out")),
                                ((v1, "v1"), (v2, "v2")), (v1_null, v2_null))
        p = self._p
        with self._device() as dev:
            self._launch(dev, self._stream(dev, stream),
                         f"flowfm::heun_correct_kernel<{CXX_TYPES[dtype_x]}, {CXX_TYPES[dtype_v]}>",
                         per_sample_grid(N // VEC if vec else N, B),
                         (p(x), p(v1), p(v2), p(v1_null), p(v2_null), p(dt), p(out), self._i64(B), self._i64(N),
                          self._f32(guidance), self._i32(vec)))

    def rk4_combine(self, x, k1, k2, k3, k4, dt, out, B, N, dtype_x, dtype_v, stream) -> None:
        vec = self._step_checks("rk4_combine", B, N, dtype_x, dtype_v, dt, ((x, "x"), (out, "out")),
                                ((k1, "k1"), (k2, "k2"), (k3, "k3"), (k4, "k4")))
        p = self._p
        with self._device() as dev:
            self._launch(dev, self._stream(dev, stream),
                         f"flowfm::rk4_combine_kernel<{CXX_TYPES[dtype_x]}, {CXX_TYPES[dtype_v]}>",
                         per_sample_grid(N // VEC if vec else N, B),
                         (p(x), p(k1), p(k2), p(k3), p(k4), p(dt), p(out), self._i64(B), self._i64(N),
                          self._i32(vec)))

    def guidance_combine(self, v, v_null, out, n, guidance, dtype, stream) -> None:
        fn = "guidance_combine"
        _require_positive(n, fn, "n")
        _require_dtype(dtype, fn, "dtype")
        for ptr, name in ((v, "v"), (v_null, "v_null"), (out, "out")):
            _require_ptr(ptr, fn, name)
        vb = VEC * _ITEMSIZE[dtype]
        vec = int(n % VEC == 0 and _aligned(v, vb) and _aligned(v_null, vb) and _aligned(out, vb))
        p = self._p
        with self._device() as dev:
            self._launch(dev, self._stream(dev, stream), f"flowfm::guidance_combine_kernel<{CXX_TYPES[dtype]}>",
                         per_sample_grid(n // VEC if vec else n, 1),
                         (p(v), p(v_null), p(out), self._i64(n), self._f32(guidance), self._i32(vec)))
