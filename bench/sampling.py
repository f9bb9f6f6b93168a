"""Sampling benchmark: FlowFM ``fast_sample`` (Euler / Heun at several NFE) against the DDPM baseline's DDIM and
DDPM-1000, side by side in one run.

    python -m bench.sampling [--quick] [--out bench/results] [--device cpu|cuda] [--preset small]

Models have RANDOM weights (untrained): this measures speed only, not generation quality (the network does the same
work whatever its weights). Each model is the FlowFM / DiffusionFM of the same preset, so the U-Net costs the same
per evaluation; samples are conditioned on a fixed z (the encoder runs once, outside the timing).

On CUDA each flow and DDIM configuration runs with ``cuda_graph=False`` (eager loop, fused kernels) and
``cuda_graph=True`` (the whole loop replayed as one CUDA graph); the first call (capture) is reported separately,
with ``flowfm_kernels.graphs.stats()``'s capture times. Full run: batches 1 / 64 / 256, Euler 2 / 10 / 50 and Heun 5
steps, DDIM 10 / 50 / 100 and DDPM-1000. Quick: batch 1 and 8, Euler and Heun 2 steps, DDIM-4, no DDPM.
Speed-ups are against DDPM-1000 at the same batch (eager loop), or, when DDPM was not run, against the largest DDIM
measured (``speedup_reference`` says which). Writes ``<out>/sampling_<device>.json``.
"""
from __future__ import annotations

import time

import torch

from bench import common
from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM
from flowfm.config import FlowFMConfig
from flowfm.model import FlowFM
from flowfm.sampling import fast_sample
from flowfm.solvers import nfe as flow_nfe
from flowfm_kernels import graphs


def _configs(quick: bool):
    if quick:
        return dict(batches=[1, 8], flow=[("euler", 2), ("heun", 2)], ddim=[4], ddpm=False)
    return dict(batches=[1, 64, 256], flow=[("euler", 2), ("euler", 10), ("euler", 50), ("heun", 5)],
                ddim=[10, 50, 100], ddpm=True)


def _time_sample(model, z, steps, method, cuda_graph, device, repeats):
    graphs.reset_stats()
    gen = torch.Generator(device=device).manual_seed(0)

    def call():
        return fast_sample(model, z=z, steps=steps, method=method, cuda_graph=cuda_graph, generator=gen)

    t = common.time_fn(call, device, warmup=2, repeats=repeats)
    st = graphs.stats()
    t["graph_captures"] = st["captures"]
    t["graph_hits"] = st["hits"]
    t["graph_failures"] = st["failures"]
    t["graph_capture_s_total"] = st["capture_s_total"]
    if st["last_capture"]:
        t["graph_last_capture"] = {k: v for k, v in st["last_capture"].items() if k in
                                   ("warmup_s", "capture_s", "first_call_s")}
    return t


def main(argv=None) -> dict:
    parser = common.make_parser(__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", default=None,
                        help="comma-separated batch sizes instead of the suite's (e.g. 1,64 on a slow CPU)")
    args = parser.parse_args(argv)
    device = common.resolve_device(args.device, args.threads)
    cfg = _configs(args.quick)
    if args.batches:
        cfg["batches"] = [int(b) for b in args.batches.split(",")]
    repeats = args.repeats or (3 if args.quick else 10)
    torch.manual_seed(0)
    env = common.environment(device)
    ceil = common.ceilings(device, args.quick) if device.type == "cuda" else None
    flow = FlowFM(FlowFMConfig(preset=args.preset)).to(device).eval()
    diff = DiffusionFM(DiffusionConfig(preset=args.preset)).to(device).eval()
    graph_modes = [False, True] if device.type == "cuda" else [False]
    rows, unavailable = [], []
    if device.type != "cuda":
        unavailable.append(dict(what="cuda_graph=True", reason="CUDA graphs need a CUDA device"))
    if not cfg["ddpm"]:
        unavailable.append(dict(what="ddpm-1000", reason="skipped in --quick (1000 network evaluations)"))
    for b in cfg["batches"]:
        with torch.inference_mode():
            x_ref = torch.randn(b, flow.config.in_channels, flow.config.window, device=device)
            z_flow, z_diff = flow.encode(x_ref).clone(), diff.encode(x_ref).clone()
        cases = [("flowfm", flow, z_flow, m, s, flow_nfe(m, s)) for m, s in cfg["flow"]]
        cases += [("diffusion", diff, z_diff, "ddim", s, diff.nfe("ddim", s)) for s in cfg["ddim"]]
        if cfg["ddpm"]:
            cases.append(("diffusion", diff, z_diff, "ddpm", diff.config.T, diff.nfe("ddpm", diff.config.T)))
        for model_name, model, z, method, steps, nfe in cases:
            for g in graph_modes:
                if method == "ddpm" and g:
                    unavailable.append(dict(what=f"ddpm-1000 cuda_graph=True batch {b}",
                                            reason="not measured: 1000-step graph capture; eager loop only"))
                    continue
                reps = max(2, repeats // 3) if method == "ddpm" else repeats
                t0 = time.perf_counter()
                try:
                    t = _time_sample(model, z, steps, method, g, device, reps)
                except Exception as exc:
                    unavailable.append(dict(what=f"{model_name} {method}-{steps} batch {b} cuda_graph={g}",
                                            reason=f"raised: {common.short_reason(exc)}"))
                    continue
                row = dict(model=model_name, method=method, steps=steps, nfe=nfe, batch=b, cuda_graph=g, **t,
                           windows_per_s=b / (t["median_ms"] * 1e-3), latency_ms=t["median_ms"],
                           ms_per_nfe=t["median_ms"] / nfe, wall_s=time.perf_counter() - t0)
                rows.append(row)
                print(f"{model_name:9s} {method:5s} steps={steps:<5d} nfe={nfe:<5d} batch={b:<4d} graph={int(g)} "
                      f"{t['median_ms']:10.2f} ms  {row['windows_per_s']:10.1f} win/s  first {t['first_call_ms']:.1f} ms",
                      flush=True)
    # speed-ups: vs DDPM-1000 eager at the same batch, else vs the largest DDIM (eager) at the same batch
    for b in cfg["batches"]:
        same = [r for r in rows if r["batch"] == b]
        ddpm = [r for r in same if r["method"] == "ddpm" and not r["cuda_graph"]]
        if ddpm:
            ref, label = ddpm[0], f"ddpm-{ddpm[0]['steps']} (eager loop)"
        else:
            ddims = [r for r in same if r["method"] == "ddim" and not r["cuda_graph"]]
            if not ddims:
                continue
            ref = max(ddims, key=lambda r: r["steps"])
            label = f"ddim-{ref['steps']} (largest DDIM measured; DDPM-1000 not run)"
        eager_flow = {(r["method"], r["steps"]): r["median_ms"] for r in same
                      if r["model"] == "flowfm" and not r["cuda_graph"]}
        for r in same:
            r["speedup_vs_reference"] = ref["median_ms"] / r["median_ms"]
            r["speedup_reference"] = label
            if r["model"] == "flowfm" and r["cuda_graph"] and (r["method"], r["steps"]) in eager_flow:
                r["speedup_graph_vs_eager_loop"] = eager_flow[(r["method"], r["steps"])] / r["median_ms"]
    payload = dict(device=device.type, quick=args.quick, preset=args.preset, environment=env, ceilings=ceil,
                   weights="random (untrained): speed only, not generation quality",
                   flow_parameters=flow.num_parameters(), diffusion_parameters=diff.num_parameters(),
                   backend=flow.backend, rows=rows, unavailable=unavailable)
    common.write_result(args.out, "sampling", device, payload)
    return payload


if __name__ == "__main__":
    main()
