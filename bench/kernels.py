"""Kernel benchmarks: every FlowFM op on every backend, side by side in one run.

    python -m bench.kernels [--quick] [--out bench/results] [--device cpu|cuda] [--compile auto|on|off]

Ops: gn_film_silu (forward, forward + backward), conv_block (forward), flow_matching_loss (forward + backward),
interpolate, euler_step, heun_correct. Backends: each of ``flowfm_kernels.available_backends(device)`` (eager /
triton / cuda) plus ``compile`` = ``torch.compile`` of the eager reference. A backend that cannot run here (not
available on the device, the op has no such implementation, the call or compilation raised) is recorded in
``unavailable`` with its reason, never dropped silently.

For each (op, size, backend): median / p20 / p80 ms after warm-up (first call separately: compile, autotune), the
bytes and FLOPs of the op from its ``*_cost`` function, achieved GB/s and TFLOP/s, the speed-up over eager, and on
a GPU the fraction of the copy bandwidth and matmul rate measured in the same run. fp32 throughout.
Writes ``<out>/kernels_<device>.json``.
"""
from __future__ import annotations

from typing import Callable

import torch

import flowfm_kernels as K
from bench import common
from flowfm_kernels import dispatch
from flowfm_kernels.conv_block.triton import conv_block_cost
from flowfm_kernels.fm_loss.triton import (flow_matching_loss_backward_cost, flow_matching_loss_cost,
                                           interpolate_cost)
from flowfm_kernels.gn_film_silu.triton import gn_film_silu_cost
from flowfm_kernels.ode_steps.triton import euler_step_cost, heun_correct_cost

GROUPS = 8
# (B, C, L): C is the channel count of the U-Net stage (small preset 24/48/96; harnet10 up to 256); ODE / loss ops
# act on the (B, 3, L) windows, so for them C is the window's 3 channels and B is scaled up to keep sizes comparable.
SIZES_FULL = [(8, 48, 300), (256, 96, 300), (1024, 128, 300)]
SIZES_QUICK = [(4, 16, 64)]
WINDOW_SIZES_FULL = [(64, 3, 300), (4096, 3, 300), (131072, 3, 300)]
WINDOW_SIZES_QUICK = [(8, 3, 64)]



def _rand(*shape, device, requires_grad=False):
    return torch.randn(*shape, device=device, requires_grad=requires_grad)


def _case_gn(B, C, L, device, backward: bool):
    h = _rand(B, C, L, device=device, requires_grad=backward)
    gamma, beta = 1 + 0.1 * _rand(C, device=device), 0.1 * _rand(C, device=device)
    scale, shift = 0.1 * _rand(B, C, device=device), 0.1 * _rand(B, C, device=device)
    params = [gamma, beta, scale, shift]
    if backward:
        for p in params:
            p.requires_grad_(True)
    dy = _rand(B, C, L, device=device)
    cost = gn_film_silu_cost(B, C, L, torch.float32, GROUPS)
    if backward:
        cost = dict(bytes=cost["bytes"] + cost["backward_bytes"], flops=cost["flops"] + cost["backward_flops"])

    def make(fn: Callable) -> Callable:
        if not backward:
            return lambda: fn(h, gamma, beta, scale, shift, GROUPS)
        inputs = [h] + params
        return lambda: torch.autograd.grad(fn(h, gamma, beta, scale, shift, GROUPS), inputs, dy)

    return make, cost


def _case_conv(B, C, L, device):
    x, w, bias = _rand(B, C, L, device=device), 0.1 * _rand(C, C, 3, device=device), 0.1 * _rand(C, device=device)
    gamma, beta = 1 + 0.1 * _rand(C, device=device), 0.1 * _rand(C, device=device)
    scale, shift = 0.1 * _rand(B, C, device=device), 0.1 * _rand(B, C, device=device)
    cost = conv_block_cost(B, C, C, L, torch.float32, GROUPS)

    def make(fn):
        return lambda: fn(x, w, bias, gamma, beta, scale, shift, GROUPS)

    return make, dict(bytes=cost["bytes"], flops=cost["flops"], min_bytes=cost["min_bytes"])


def _case_loss(B, C, L, device):
    v = _rand(B, C, L, device=device, requires_grad=True)
    x0, x1 = _rand(B, C, L, device=device), _rand(B, C, L, device=device)
    f, b = flow_matching_loss_cost(B, C, L, torch.float32, True), flow_matching_loss_backward_cost(B, C, L)
    cost = dict(bytes=f["bytes"] + b["bytes"], flops=f["flops"] + b["flops"])

    def make(fn):
        return lambda: torch.autograd.grad(fn(v, x0, x1, 0.0, "mean"), [v])

    return make, cost


def _case_interp(B, C, L, device):
    x0, x1, t = _rand(B, C, L, device=device), _rand(B, C, L, device=device), torch.rand(B, device=device)

    def make(fn):
        return lambda: fn(x0, x1, t, 0.0)

    return make, interpolate_cost(B, C, L)


def _case_euler(B, C, L, device):
    x, v, dt = _rand(B, C, L, device=device), _rand(B, C, L, device=device), torch.full((B,), 0.1, device=device)
    out = torch.empty_like(x)

    def make(fn):
        return lambda: fn(x, v, dt, out, None, 1.0)

    return make, euler_step_cost(B, C, L)


def _case_heun(B, C, L, device):
    x, v1, v2 = (_rand(B, C, L, device=device) for _ in range(3))
    dt, out = torch.full((B,), 0.1, device=device), torch.empty_like(x)

    def make(fn):
        return lambda: fn(x, v1, v2, dt, out, None, None, 1.0)

    return make, heun_correct_cost(B, C, L)


# name -> (dispatcher op, case builder, uses window sizes)
CASES = {
    "gn_film_silu_fwd": ("gn_film_silu", lambda B, C, L, d: _case_gn(B, C, L, d, False), False),
    "gn_film_silu_fwd_bwd": ("gn_film_silu", lambda B, C, L, d: _case_gn(B, C, L, d, True), False),
    "conv_block_fwd": ("conv_block", _case_conv, False),
    "flow_matching_loss_fwd_bwd": ("flow_matching_loss", _case_loss, True),
    "interpolate": ("interpolate", _case_interp, True),
    "euler_step": ("euler_step", _case_euler, True),
    "heun_correct": ("heun_correct", _case_heun, True),
}

PUBLIC = {"gn_film_silu": K.gn_film_silu, "conv_block": K.conv_block, "flow_matching_loss": K.flow_matching_loss,
          "interpolate": K.interpolate, "euler_step": K.euler_step, "heun_correct": K.heun_correct}
REFS = {"gn_film_silu": K.gn_film_silu_ref, "conv_block": K.conv_block_ref,
        "flow_matching_loss": K.flow_matching_loss_ref, "interpolate": K.interpolate_ref,
        "euler_step": K.euler_step_ref, "heun_correct": K.heun_correct_ref}


def _backend_fn(op: str, backend: str) -> Callable:
    public = PUBLIC[op]
    return lambda *args: public(*args, backend=backend)


def run(device: torch.device, quick: bool, repeats: int, compile_off: str | None, ceil: dict | None) -> dict:
    avail = K.available_backends(device)
    if device.type == "cpu" and avail.get("triton") is None:
        # TRITON_INTERPRET=1 makes triton "available" on CPU, but the interpreter is a test tool, not a benchmark
        avail["triton"] = "Triton on CPU runs only in its interpreter (TRITON_INTERPRET=1): a test tool, not timed"
    rows, unavailable = [], []
    compiled: dict[str, Callable] = {}
    for case, (op, builder, window) in CASES.items():
        sizes = (WINDOW_SIZES_QUICK if quick else WINDOW_SIZES_FULL) if window else \
            (SIZES_QUICK if quick else SIZES_FULL)
        backends = {}
        for b in ("eager", "triton", "cuda"):
            if b not in dispatch.registered_backends(op):
                unavailable.append(dict(case=case, op=op, backend=b, reason=f"op {op!r} has no {b!r} implementation"))
            elif avail.get(b):
                unavailable.append(dict(case=case, op=op, backend=b, reason=avail[b]))
            else:
                backends[b] = _backend_fn(op, b)
        if compile_off:
            unavailable.append(dict(case=case, op=op, backend="compile", reason=compile_off))
        else:
            if op not in compiled:
                compiled[op] = torch.compile(REFS[op], dynamic=False)
            backends["compile"] = compiled[op]
        failed: set[str] = set()
        for (B, C, L) in sizes:
            make, cost = builder(B, C, L, device)
            eager_ms = None
            for name, fn in backends.items():
                if name in failed:
                    continue
                try:
                    t = common.time_fn(make(fn), device, warmup=3, repeats=repeats,
                                       min_total_s=0.0 if quick else 0.2, max_repeats=200)
                except Exception as exc:  # a backend or compiler failure is a result, not a crash
                    failed.add(name)
                    unavailable.append(dict(case=case, op=op, backend=name, size=[B, C, L],
                                            reason=f"raised: {common.short_reason(exc)}"))
                    continue
                if name == "eager":
                    eager_ms = t["median_ms"]
                row = dict(case=case, op=op, backend=name, B=B, C=C, L=L, **t,
                           **common.rates(cost, t["median_ms"], ceil))
                if "min_bytes" in cost:
                    row["min_bytes"] = int(cost["min_bytes"])
                row["speedup_vs_eager"] = None if eager_ms is None else eager_ms / t["median_ms"]
                rows.append(row)
                print(f"{case:28s} {name:8s} B={B:<6d} C={C:<4d} L={L:<4d} {t['median_ms']:9.4f} ms "
                      f"{row['gbps']:8.2f} GB/s {row['tflops'] * 1e3:9.2f} GFLOP/s"
                      + (f" {row['frac_copy_bw']:.0%} of copy BW" if ceil else ""), flush=True)
            del make
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return dict(available_backends={k: v for k, v in avail.items()}, rows=rows, unavailable=unavailable)


def main(argv=None) -> dict:
    parser = common.make_parser(__doc__)
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                        help="benchmark torch.compile of the eager reference; auto = on for CUDA, off on CPU "
                             "(inductor's C++ build takes minutes on a 2-core CPU); off is recorded as unavailable")
    parser.add_argument("--no-compile", dest="compile", action="store_const", const="off", help="= --compile off")
    args = parser.parse_args(argv)
    device = common.resolve_device(args.device, args.threads)
    torch.manual_seed(0)
    repeats = args.repeats or (5 if args.quick else 20)
    env = common.environment(device)
    ceil = common.ceilings(device, args.quick)
    print(f"ceilings: {ceil}", flush=True)
    if args.compile == "off":
        compile_off = "disabled (--compile off)"
    elif args.compile == "auto" and device.type != "cuda":
        compile_off = ("not run on CPU by default (--compile auto): inductor's C++ build took over 2 minutes per op "
                       "on the 2-core dev CPU; pass --compile on to measure it")
    else:
        compile_off = None
    res = run(device, args.quick, repeats, compile_off, ceil if device.type == "cuda" else None)
    payload = dict(device=device.type, quick=args.quick, dtype="float32", environment=env, ceilings=ceil,
                   notes="times in ms; bytes/flops from flowfm_kernels.*.triton *_cost (fwd+bwd cases add the "
                         "backward cost); frac_* only on GPU (measured in this run)", **res)
    common.write_result(args.out, "kernels", device, payload)
    return payload


if __name__ == "__main__":
    main()
