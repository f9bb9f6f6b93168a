"""CPU inference benchmark: ``fast_sample`` (eager torch), the ONNX Runtime runner, facebookresearch's
``flow_matching`` ODESolver and ``torchdiffeq.odeint`` on the same velocity network, same NFE (Euler 10 steps,
midpoint 5 steps), plus the CPU matmul ceiling. Interleaved repeats, median latency; load average recorded.

    python -m bench.cpu_inference [--checkpoint DIR] [--batches 1 64] [--repeats 5] [--out bench/results]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flowfm.config import FlowFMConfig
from flowfm.data.atomic import atomic_write_text
from flowfm.model import FlowFM
from flowfm.sampling import generate

CASES = (("euler", 10), ("midpoint", 5))


def matmul_gflops(n: int = 512, repeats: int = 5) -> float:
    """fp32 matmul GFLOP/s of an n x n product (2 n^3 flops), median of repeats."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool start and first-touch
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _paths(model, runner, method: str, steps: int):
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper
    from torchdiffeq import odeint

    class Wrapped(ModelWrapper):
        def forward(self, x, t, **extras):
            return model.velocity(x, t.reshape(-1).expand(x.shape[0]).to(x.dtype), extras["z"])

    solver = ODESolver(velocity_model=Wrapped(model))
    grid = torch.tensor([0.0, 1.0])

    def flowfm_eager(x0, z):
        return generate(model, x0, z, steps, method, 1.0, "eager")

    def onnx_runner(x0, z):
        return torch.from_numpy(runner.sample(z.numpy(), steps=steps, method=method, x0=x0.numpy())
                                - runner.mean) / torch.from_numpy(runner.std)

    def flow_matching(x0, z):
        return solver.sample(x_init=x0, step_size=1.0 / steps, method=method, time_grid=grid, z=z)

    def torchdiffeq(x0, z):
        f = lambda t, x: model.velocity(x, t.reshape(1).expand(x.shape[0]), z)
        return odeint(f, x0, grid, method=method, options={"step_size": 1.0 / steps})[-1]

    return {"fast_sample_eager": flowfm_eager, "onnx_runner": onnx_runner, "flow_matching_ODESolver": flow_matching,
            "torchdiffeq_odeint": torchdiffeq}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default=None, help="trained FlowFM (default: a freshly initialised small preset)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from flowfm.export.onnx_export import export_onnx
    from flowfm.export.runner import OrtRunner

    if args.checkpoint:
        model = FlowFM.load(args.checkpoint, backend="eager")
    else:
        torch.manual_seed(0)
        model = FlowFM(FlowFMConfig(preset="small"), backend="eager")
        with torch.no_grad():  # the output conv and FiLM start at zero; perturb so the samples are non-trivial
            for q in model.velocity_net.parameters():
                q.add_(0.02 * torch.randn_like(q))
    model.eval()
    L, C = model.config.window, model.config.in_channels
    runner = OrtRunner(export_onnx(model, tempfile.mkdtemp()), threads=args.threads)
    rows, load = [], [os.getloadavg()]
    ceiling = matmul_gflops()
    with torch.inference_mode():
        for b in args.batches:
            g = torch.Generator().manual_seed(b)
            x0, z = torch.randn(b, C, L, generator=g), torch.randn(b, model.z_dim, generator=g)
            for method, steps in CASES:
                paths = _paths(model, runner, method, steps)
                ref = paths["fast_sample_eager"](x0, z)
                times = {name: [] for name in paths}
                diffs = {name: float((fn(x0, z) - ref).abs().max()) for name, fn in paths.items()}
                for _ in range(args.repeats):  # interleaved
                    for name, fn in paths.items():
                        t0 = time.perf_counter()
                        fn(x0, z)
                        times[name].append(time.perf_counter() - t0)
                base = statistics.median(times["flow_matching_ODESolver"])
                for name in paths:
                    med = statistics.median(times[name])
                    rows.append({"batch": b, "method": method, "steps": steps, "path": name,
                                 "latency_ms": 1e3 * med, "windows_per_s": b / med,
                                 "speedup_vs_flow_matching": base / med, "max_abs_diff_vs_fast_sample": diffs[name]})
                load.append(os.getloadavg())
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "threads": args.threads, "loadavg": load, "matmul_gflops_512": ceiling,
           "model": args.checkpoint or "small preset, freshly initialised (weights perturbed); latency only",
           "window": L, "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    stem = out / f"cpu_inference_{datetime.date.today().isoformat()}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(doc, indent=1))
    lines = [f"# CPU inference ({doc['date']}, {args.threads} threads, load {load[0][0]:.1f}, "
             f"matmul ceiling {ceiling:.0f} GFLOP/s)", "", f"Model: {doc['model']}; window {L}.", "",
             "| batch | solver | path | latency ms | windows/s | x vs flow_matching | max diff |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['method']} {r['steps']} | {r['path']} | {r['latency_ms']:.1f} | "
                     f"{r['windows_per_s']:.1f} | {r['speedup_vs_flow_matching']:.2f} | "
                     f"{r['max_abs_diff_vs_fast_sample']:.1e} |")
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
