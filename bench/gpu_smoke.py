"""GPU smoke runs for ``bench/gpu_check.sh``: every kernel against its eager reference, timed, in one process each.

    python -m bench.gpu_smoke triton [--device cpu|cuda] [--out DIR] [--quick]   # every Triton op
    python -m bench.gpu_smoke cuda   [--device cpu|cuda] [--out DIR] [--quick]   # CUDA C++ ops: _C and CuPy JIT
    python -m bench.gpu_smoke graphs [--device cpu|cuda] [--out DIR] [--quick]   # fast_sample eager vs CUDA graph

All three write one file, ``<out>/gpu_smoke_<device>.json``, a section each (``sections.triton`` / ``cuda`` /
``graphs``), rewritten atomically after every case, so a run killed by its time cap keeps what it measured.

**Kernel rows** (``triton``, ``cuda``). Ops: conv_block (forward; forward + backward), gn_film_silu (forward;
forward + backward), flow_matching_loss (forward + backward), interpolate, euler_step (plain and guided, w = 2),
heun_correct (guided), rk4_combine, guidance_combine; through the public API (``flowfm_kernels.<op>(...,
backend=...)``). Sizes (B, C, L) = (256, 96, 300) and (1024, 128, 300), plus the ODE state (1024, 3, 300) for the
window ops; fp32 and bf16. (``--quick``: (2, 16, 20), fp32.) Per (case, size, dtype, backend):

* accuracy: every output (forward result and each gradient) against the eager reference evaluated in float64 on the
  same (dtype-rounded) inputs, as relative RMS error ``||y - y_ref|| / ||y_ref||`` (worst output), next to the
  tolerance of the dtype (fp32 1e-5; 5e-3 for conv_block in fp32 on a GPU, whose ``tl.dot`` runs in TF32 by
  default; bf16 1.6e-2; backward 2x), ``ok`` = finite and within tolerance;
* time: median / p20 / p80 ms (GPU: ``triton.testing.do_bench``, CUDA events with the L2 cache flushed before each
  call; CPU: one ``perf_counter`` repeat: plumbing, not a benchmark) and the first call alone (compile, autotune);
* ``bytes`` and ``flops`` from the op's ``*_cost`` model (forward + backward for the backward cases), ``gbps`` =
  bytes / median, ``tflops``, and ``frac_copy_bw`` / ``frac_matmul``: those over the ``dst.copy_(src)`` bandwidth
  and TF32 matmul rate measured in the same run (``ceilings``, :func:`bench.common.rates`), and
  ``x_eager`` = eager median / this backend's median, eager timed in the same run at the same dtype.

``cuda`` runs the rows once per implementation of the CUDA backend: ``FLOWFM_CUDA_IMPL=ext`` (the compiled
``flowfm_kernels._C``) and ``jit`` (its CuPy/NVRTC twin), each recorded as unavailable with the loader's reason when
it cannot run.

**Graph rows** (``graphs``): ``fast_sample`` of a random-weight FlowFM (preset small; quick: tiny) at batch 1 and 256
(quick: 1 and 4), Euler-10 and Heun-5 (quick: Euler-2), ``cuda_graph=False`` vs ``True`` at equal NFE
(:func:`bench.sampling.time_sample`, which records ``flowfm_kernels.graphs.stats()``), the replay's speed-up over the
eager loop, and the largest difference between the two outputs for the same noise.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch

import flowfm_kernels as K
from bench import common
from flowfm.data.atomic import atomic_write_text

SUITE = "gpu_smoke"
GROUPS = 8
SIZES = [(256, 96, 300), (1024, 128, 300)]
WINDOW_SIZES = [(1024, 3, 300)]
QUICK_SIZES = [(2, 16, 20)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOL = {"fp32": 1e-5, "bf16": 1.6e-2}
TF32_TOL = 5e-3  # conv_block's fp32 tl.dot runs in TF32 unless FLOWFM_TRITON_DOT_PRECISION=ieee
BACKWARD_TOL_FACTOR = 2.0

PUBLIC = {"conv_block": K.conv_block, "gn_film_silu": K.gn_film_silu, "flow_matching_loss": K.flow_matching_loss,
          "interpolate": K.interpolate, "euler_step": K.euler_step, "heun_correct": K.heun_correct,
          "rk4_combine": K.rk4_combine, "guidance_combine": K.guidance_combine}
REFS = {"conv_block": K.conv_block_ref, "gn_film_silu": K.gn_film_silu_ref,
        "flow_matching_loss": K.flow_matching_loss_ref, "interpolate": K.interpolate_ref,
        "euler_step": K.euler_step_ref, "heun_correct": K.heun_correct_ref, "rk4_combine": K.rk4_combine_ref,
        "guidance_combine": K.guidance_combine_ref}


# ------------------------------------------------------------------------------------------------------ the cases
def _t(shape, dtype, device, scale=1.0, offset=0.0, grad=False) -> torch.Tensor:
    x = (offset + scale * torch.randn(*shape, device=device)).to(dtype)
    return x.requires_grad_(grad)


def _grads(outputs: torch.Tensor, args: list, dy: torch.Tensor) -> tuple:
    wrt = [a for a in args if torch.is_tensor(a) and a.requires_grad]
    return tuple(torch.autograd.grad(outputs, wrt, dy.to(outputs.dtype)))


def _conv(B, C, L, dtype, device, backward):
    """args = x (B, C, L), weight (C, C, 3), bias, gamma, beta (C), scale, shift (B, C), dy (B, C, L)."""
    g = backward
    args = [_t((B, C, L), dtype, device, grad=g), _t((C, C, 3), dtype, device, (3 * C) ** -0.5, grad=g),
            _t((C,), dtype, device, 0.1, grad=g), _t((C,), dtype, device, 0.1, 1.0, grad=g),
            _t((C,), dtype, device, 0.1, grad=g), _t((B, C), dtype, device, 0.1, grad=g),
            _t((B, C), dtype, device, 0.1, grad=g), _t((B, C, L), dtype, device)]

    def run(fn, a):
        y = fn(*a[:7], GROUPS)
        return (y,) + (_grads(y, a[:7], a[7]) if backward else ())

    return args, run


def _gn(B, C, L, dtype, device, backward):
    """args = h (B, C, L), gamma, beta (C), scale, shift (B, C), dy (B, C, L)."""
    g = backward
    args = [_t((B, C, L), dtype, device, grad=g), _t((C,), dtype, device, 0.1, 1.0, grad=g),
            _t((C,), dtype, device, 0.1, grad=g), _t((B, C), dtype, device, 0.1, grad=g),
            _t((B, C), dtype, device, 0.1, grad=g), _t((B, C, L), dtype, device)]

    def run(fn, a):
        y = fn(*a[:5], GROUPS)
        return (y,) + (_grads(y, a[:5], a[5]) if backward else ())

    return args, run


def _loss(B, C, L, dtype, device, backward=True):
    """args = v, x0, x1 (B, C, L); the scalar loss and d loss / d v."""
    args = [_t((B, C, L), dtype, device, grad=True), _t((B, C, L), dtype, device), _t((B, C, L), dtype, device)]

    def run(fn, a):
        loss = fn(a[0], a[1], a[2], 0.0, "mean")
        return (loss,) + tuple(torch.autograd.grad(loss, [a[0]]))

    return args, run


def _interp(B, C, L, dtype, device, backward=False):
    args = [_t((B, C, L), dtype, device), _t((B, C, L), dtype, device), torch.rand(B, device=device)]
    return args, lambda fn, a: (fn(a[0], a[1], a[2], 0.0),)


def _dt(B, device):
    return torch.full((B,), 0.1, device=device)


def _euler(B, C, L, dtype, device, backward=False, guided=False):
    args = [_t((B, C, L), dtype, device), _t((B, C, L), dtype, device), _dt(B, device)]
    if guided:
        args.append(_t((B, C, L), dtype, device))
        return args, lambda fn, a: (fn(a[0], a[1], a[2], None, a[3], 2.0),)
    return args, lambda fn, a: (fn(a[0], a[1], a[2]),)


def _heun(B, C, L, dtype, device, backward=False):
    args = [_t((B, C, L), dtype, device) for _ in range(3)] + [_dt(B, device)] + \
           [_t((B, C, L), dtype, device) for _ in range(2)]
    return args, lambda fn, a: (fn(a[0], a[1], a[2], a[3], None, a[4], a[5], 2.0),)


def _rk4(B, C, L, dtype, device, backward=False):
    args = [_t((B, C, L), dtype, device) for _ in range(5)] + [_dt(B, device)]
    return args, lambda fn, a: (fn(*a),)


def _guidance(B, C, L, dtype, device, backward=False):
    args = [_t((B, C, L), dtype, device), _t((B, C, L), dtype, device)]
    return args, lambda fn, a: (fn(a[0], a[1], 2.0),)


def _cost(case: str, B: int, C: int, L: int, dtype: torch.dtype) -> Optional[dict]:
    """``{bytes, flops}`` of one call from the ops' cost models (forward + backward for the ``_bwd`` cases)."""
    from flowfm_kernels.conv_block.triton import conv_block_cost
    from flowfm_kernels.fm_loss.triton import (flow_matching_loss_backward_cost, flow_matching_loss_cost,
                                               interpolate_cost)
    from flowfm_kernels.gn_film_silu.triton import gn_film_silu_cost
    from flowfm_kernels.ode_steps import triton as ode

    if case.startswith("conv_block"):
        c = conv_block_cost(B, C, C, L, dtype, GROUPS)
    elif case.startswith("gn_film_silu"):
        c = gn_film_silu_cost(B, C, L, dtype, GROUPS)
    elif case == "flow_matching_loss_fwd_bwd":
        f, b = flow_matching_loss_cost(B, C, L, dtype, True), flow_matching_loss_backward_cost(B, C, L, dtype)
        return dict(bytes=int(f["bytes"] + b["bytes"]), flops=int(f["flops"] + b["flops"]))
    elif case == "interpolate":
        c = interpolate_cost(B, C, L, dtype)
    elif case == "euler_step":
        c = ode.euler_step_cost(B, C, L, dtype)
    elif case == "euler_step_guided":
        c = ode.euler_step_cost(B, C, L, dtype, guided=True)
    elif case == "heun_correct_guided":
        c = ode.heun_correct_cost(B, C, L, dtype, guided=True)
    elif case == "rk4_combine":
        c = ode.rk4_combine_cost(B, C, L, dtype)
    elif case == "guidance_combine":
        c = ode.guidance_combine_cost(B, C, L, dtype)
    else:
        return None
    bwd = case.endswith("_bwd")
    return dict(bytes=int(c["bytes"] + (c.get("backward_bytes", 0) if bwd else 0)),
                flops=int(c["flops"] + (c.get("backward_flops", 0) if bwd else 0)))


# case -> (op, builder, backward, window op)
CASES: dict[str, tuple[str, Callable, bool, bool]] = {
    "conv_block_fwd": ("conv_block", lambda *s: _conv(*s, backward=False), False, False),
    "conv_block_fwd_bwd": ("conv_block", lambda *s: _conv(*s, backward=True), True, False),
    "gn_film_silu_fwd": ("gn_film_silu", lambda *s: _gn(*s, backward=False), False, False),
    "gn_film_silu_fwd_bwd": ("gn_film_silu", lambda *s: _gn(*s, backward=True), True, False),
    "flow_matching_loss_fwd_bwd": ("flow_matching_loss", _loss, True, True),
    "interpolate": ("interpolate", _interp, False, True),
    "euler_step": ("euler_step", _euler, False, True),
    "euler_step_guided": ("euler_step", lambda *s: _euler(*s, guided=True), False, True),
    "heun_correct_guided": ("heun_correct", _heun, False, True),
    "rk4_combine": ("rk4_combine", _rk4, False, True),
    "guidance_combine": ("guidance_combine", _guidance, False, True),
}
CUDA_OPS = ("gn_film_silu", "flow_matching_loss", "interpolate", "euler_step", "heun_correct", "rk4_combine",
            "guidance_combine")  # conv_block has no CUDA C++ implementation


# ------------------------------------------------------------------------------------------------ measurement
def _sync(device: torch.device) -> None:
    common.sync(device)


def _rel_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().double(), expected.detach().double()
    if a.shape != e.shape:
        return math.inf
    if not torch.isfinite(a).all():
        return math.nan
    return float((a - e).norm() / e.norm().clamp_min(1e-30))


def _to64(args: list) -> list:
    return [a.detach().double().requires_grad_(a.requires_grad) if torch.is_tensor(a) and a.is_floating_point()
            else a for a in args]


def tolerance(case: str, dtype_name: str, device: torch.device) -> float:
    """Relative-RMS tolerance of ``case`` in ``dtype_name``; TF32's for conv_block in fp32 on a GPU (the interpreter
    runs ``tl.dot`` in full fp32)."""
    tol = TOL[dtype_name]
    if case.startswith("conv_block") and dtype_name == "fp32" and device.type == "cuda" and \
            os.environ.get("FLOWFM_TRITON_DOT_PRECISION", "tf32").strip().lower() in ("", "tf32"):
        tol = TF32_TOL
    return tol * (BACKWARD_TOL_FACTOR if CASES[case][2] else 1.0)


def timed(fn: Callable[[], object], device: torch.device) -> dict:
    """Median / p20 / p80 ms of ``fn()`` (already called once, so compiled)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        q = do_bench(fn, warmup=10, rep=40, quantiles=[0.5, 0.2, 0.8])
        return dict(median_ms=float(q[0]), p20_ms=float(q[1]), p80_ms=float(q[2]),
                    timer="triton.testing.do_bench (CUDA events, L2 flushed)")
    t = common.time_fn(fn, device, warmup=1, repeats=1)
    return dict(median_ms=t["median_ms"], p20_ms=t["p20_ms"], p80_ms=t["p80_ms"],
                timer="perf_counter x1 (CPU plumbing run: not a benchmark)")


def _first_call(fn: Callable[[], tuple], device: torch.device) -> tuple[tuple, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, (time.perf_counter() - t0) * 1e3


def kernel_rows(device: torch.device, backend: str, label: str, quick: bool, ceil: Optional[dict],
                record: Callable[[dict], None], ops: Optional[tuple] = None) -> None:
    """Every case x size x dtype on ``backend`` (rows labelled ``label``), each passed to ``record`` at once."""
    sizes, window_sizes = (QUICK_SIZES, QUICK_SIZES) if quick else (SIZES, SIZES + WINDOW_SIZES)
    dtypes = ["fp32"] if quick else list(DTYPES)
    for case, (op, build, _, window) in CASES.items():
        if ops is not None and op not in ops:
            continue
        for (B, C, L) in (window_sizes if window else sizes):
            for dname in dtypes:
                dtype = DTYPES[dname]
                row = dict(case=case, op=op, backend=label, B=B, C=C, L=L, dtype=dname,
                           tol=tolerance(case, dname, device))
                try:
                    torch.manual_seed(0)
                    args, run = build(B, C, L, dtype, device)
                    impl = PUBLIC[op]
                    kernel = (lambda a=args: run(lambda *x: impl(*x, backend=backend), a))
                    out, first_ms = _first_call(kernel, device)
                    ref = run(REFS[op], _to64(args))
                    errs = [_rel_rms(o, r) for o, r in zip(out, ref)]
                    worst = max(errs, key=lambda e: (math.isnan(e), e))
                    row.update(rel_rms_err=worst, outputs_compared=len(errs),
                               ok=bool(len(out) == len(ref) and math.isfinite(worst) and worst <= row["tol"]))
                    del out, ref
                    t = timed(kernel, device)
                    eager = timed(lambda a=args: run(lambda *x: impl(*x, backend="eager"), a), device)
                    row.update(**t, first_call_ms=first_ms, eager_median_ms=eager["median_ms"],
                               x_eager=eager["median_ms"] / t["median_ms"])
                    try:
                        cost = _cost(case, B, C, L, dtype)
                    except Exception as exc:  # a cost model whose signature moved: no GB/s, said so
                        cost, row["cost_error"] = None, common.short_reason(exc)
                    if cost:
                        row.update(common.rates(cost, t["median_ms"], ceil))
                    del args
                except Exception as exc:  # a failing op is a result, not the end of the run
                    row.update(ok=False, error=common.short_reason(exc))
                record(row)
                _print_row(row)
                if device.type == "cuda":
                    torch.cuda.empty_cache()


def _print_row(row: dict) -> None:
    head = f"{row['backend']:9s} {row['case']:27s} {row['B']:>5d}x{row['C']:<4d}x{row['L']:<4d} {row['dtype']}"
    if "error" in row:
        print(f"{head}  ERROR {row['error']}", flush=True)
        return
    gbps = f" {row['gbps']:8.1f} GB/s" if "gbps" in row else ""
    print(f"{head}  err {row['rel_rms_err']:.2e} (tol {row['tol']:.0e}) {'ok' if row['ok'] else 'FAIL'}  "
          f"{row['median_ms']:9.4f} ms{gbps}  x{row['x_eager']:.2f} eager  first {row['first_call_ms']:.0f} ms",
          flush=True)


# ------------------------------------------------------------------------------------------------- the sections
class Results:
    """``<out>/gpu_smoke_<device>.json``: one section per subcommand, the file rewritten atomically on every update."""

    def __init__(self, out: str | Path, device: torch.device, section: str, quick: bool):
        self.path = Path(out) / f"{SUITE}_{device.type}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = json.loads(self.path.read_text()) if self.path.exists() else {}
        if doc.get("suite") != SUITE:
            doc = dict(suite=SUITE, schema=common.SCHEMA_VERSION, device=device.type, sections={})
        doc["environment"] = common.environment(device)
        self.doc, self.name = doc, section
        self.section = doc["sections"][section] = dict(quick=quick, complete=False, rows=[], unavailable=[],
                                                       started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                 time.gmtime()))
        self.write()

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.doc, indent=1, default=str, allow_nan=True) + "\n")

    def add(self, row: dict) -> None:
        self.section["rows"].append(row)
        self.write()

    def unavailable(self, what: str, reason: str) -> None:
        self.section["unavailable"].append(dict(what=what, reason=reason))
        self.write()

    def finish(self) -> None:
        rows = self.section["rows"]
        self.section.update(complete=True, n_rows=len(rows), n_ok=sum(bool(r.get("ok", True)) for r in rows),
                            n_failed=[f"{r['backend']} {r['case']} {r['B']}x{r['C']}x{r['L']} {r['dtype']}"
                                      for r in rows if r.get("ok") is False])
        self.write()
        print(f"wrote {self.path} ({len(rows)} rows)", flush=True)


def run_triton(device: torch.device, res: Results, quick: bool) -> None:
    reason = K.available_backends(device)["triton"]
    ceil = common.ceilings(device, quick)
    res.section["ceilings"] = ceil
    print(f"ceilings: {ceil}", flush=True)
    if reason:
        res.unavailable("triton", reason)
        return
    kernel_rows(device, "triton", "triton", quick, ceil if device.type == "cuda" else None, res.add)


def run_cuda(device: torch.device, res: Results, quick: bool) -> None:
    from flowfm_kernels.cuda import loader

    ceil = common.ceilings(device, True) if device.type == "cuda" else None
    res.section["ceilings"] = ceil
    previous = os.environ.get(loader.IMPL_ENV)
    try:
        for impl in ("ext", "jit"):
            os.environ[loader.IMPL_ENV] = impl
            reason = K.available_backends(device)["cuda"]
            if reason:
                res.unavailable(f"cuda ({loader.IMPL_ENV}={impl})", reason)
                print(f"cuda-{impl}: unavailable: {reason}", flush=True)
                continue
            res.section.setdefault("implementations", {})[impl] = loader.implementation()
            kernel_rows(device, "cuda", f"cuda-{impl}", quick, ceil, res.add, ops=CUDA_OPS)
    finally:
        if previous is None:
            os.environ.pop(loader.IMPL_ENV, None)
        else:
            os.environ[loader.IMPL_ENV] = previous


def run_graphs(device: torch.device, res: Results, quick: bool) -> None:
    from bench.sampling import time_sample
    from flowfm.config import FlowFMConfig
    from flowfm.model import FlowFM
    from flowfm.sampling import fast_sample
    from flowfm.solvers import nfe as flow_nfe

    preset = "tiny" if quick else "small"
    torch.manual_seed(0)
    model = FlowFM(FlowFMConfig(preset=preset)).to(device).eval()
    res.section.update(preset=preset, weights="random (untrained): speed only", backend=model.backend)
    modes = [False, True] if device.type == "cuda" else [False]
    if device.type != "cuda":
        res.unavailable("cuda_graph=True", "CUDA graphs need a CUDA device")
    res.unavailable("diffusion baseline", "not timed here: bench.sampling times it (its rows say whether a "
                                          "graph replayed)")
    settings = [("euler", 2)] if quick else [("euler", 10), ("heun", 5)]
    for b in ([1, 4] if quick else [1, 256]):
        with torch.inference_mode():
            z = model.encode(torch.randn(b, model.config.in_channels, model.config.window, device=device)).clone()
        for method, steps in settings:
            outputs, eager_ms = {}, None
            for g in modes:
                row = dict(method=method, steps=steps, nfe=flow_nfe(method, steps), batch=b, cuda_graph=g)
                try:
                    t = time_sample(model, z, steps, method, g, device, 3 if quick else 10)
                    gen = torch.Generator(device=device).manual_seed(1)
                    outputs[g] = fast_sample(model, z=z, steps=steps, method=method, cuda_graph=g, generator=gen)
                    row.update(**t, windows_per_s=b / (t["median_ms"] * 1e-3))
                    if g:
                        row["graph_replayed"] = t["graph_hits"] > 0
                        if eager_ms:
                            row["x_eager_loop"] = eager_ms / t["median_ms"]
                        if False in outputs:
                            diff = (outputs[True].double() - outputs[False].double()).abs().max()
                            row["max_abs_diff_vs_eager"] = float(diff)
                    else:
                        eager_ms = t["median_ms"]
                except Exception as exc:
                    row.update(error=common.short_reason(exc))
                res.add(row)
                print(f"graphs {method}-{steps} batch {b} cuda_graph={int(g)}: "
                      + (row["error"] if "error" in row else f"{row['median_ms']:.3f} ms"
                         + (f" x{row['x_eager_loop']:.2f} vs eager loop" if "x_eager_loop" in row else "")),
                      flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()


SECTIONS = {"triton": run_triton, "cuda": run_cuda, "graphs": run_graphs}


def main(argv=None) -> dict:
    parser = common.make_parser(__doc__)
    parser.add_argument("section", choices=tuple(SECTIONS), help="what to run")
    parser.set_defaults(out="gpu_out")
    args = parser.parse_args(argv)
    device = common.resolve_device(args.device, args.threads)
    res = Results(args.out, device, args.section, args.quick)
    SECTIONS[args.section](device, res, args.quick)
    res.finish()
    return res.doc


if __name__ == "__main__":
    main()
