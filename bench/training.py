"""Training-step benchmark: FlowFM vs the DDPM baseline (DiffusionFM) vs SSL-Wearables multi-task pretraining.

    python -m bench.training [--quick] [--out bench/results] [--device cpu|cuda] [--preset small] [--batch 64]

One step = ``zero_grad`` + ``model.loss(x)`` + ``backward`` + ``AdamW.step`` on random windows (B, 3, 300) in g
(random weights; the step costs the same whatever the data). Reports median / p20 / p80 step time, windows/s, the
first step separately and, on CUDA, peak allocated memory. On CUDA FlowFM and DiffusionFM also run with
``backend="eager"`` beside the default (``auto``: fused kernels), so the kernels' effect on training is measured in
the same run. Full: small preset, batch 64, 20 timed steps. Quick: tiny preset, batch 8, 3 timed steps.
Writes ``<out>/training_<device>.json``.
"""
from __future__ import annotations

import torch

from bench import common
from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM
from flowfm.baselines.ssl_wearables import SSLWearables, SSLWearablesConfig
from flowfm.config import FlowFMConfig
from flowfm.model import FlowFM


def _models(preset: str):
    return [("flowfm", lambda: FlowFM(FlowFMConfig(preset=preset))),
            ("diffusion", lambda: DiffusionFM(DiffusionConfig(preset=preset))),
            ("ssl_wearables", lambda: SSLWearables(SSLWearablesConfig(preset=preset)))]


def main(argv=None) -> dict:
    parser = common.make_parser(__doc__)
    parser.add_argument("--preset", default=None, help="default: small (quick: tiny)")
    parser.add_argument("--batch", type=int, default=None, help="default: 64 (quick: 8)")
    args = parser.parse_args(argv)
    device = common.resolve_device(args.device, args.threads)
    preset = args.preset or ("tiny" if args.quick else "small")
    batch = args.batch or (8 if args.quick else 64)
    repeats = args.repeats or (3 if args.quick else 20)
    env = common.environment(device)
    torch.manual_seed(0)
    x = 0.5 * torch.randn(batch, 3, 300, device=device)
    x[:, 2] += 1.0  # gravity on one axis, like a worn sensor
    backends = ["auto", "eager"] if device.type == "cuda" else ["auto"]
    rows, unavailable = [], []
    if device.type != "cuda":
        unavailable.append(dict(what="backend=eager vs auto comparison",
                                reason="on CPU auto resolves to eager (fused kernels need CUDA)"))
    for name, build in _models(preset):
        for backend in backends:
            if name == "ssl_wearables" and backend != "auto":
                continue  # no FlowFM kernels in the SSL model
            torch.manual_seed(0)
            try:
                model = build().to(device)
                model.fit_normalizer(x)
                model.set_backend(backend)
                model.train()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
                gen = torch.Generator(device=device).manual_seed(0)

                def step():
                    opt.zero_grad(set_to_none=True)
                    loss = model.loss(x, generator=gen)
                    loss.backward()
                    opt.step()
                    return loss

                common.peak_memory_reset(device)
                t = common.time_fn(step, device, warmup=2, repeats=repeats)
            except Exception as exc:
                unavailable.append(dict(what=f"{name} backend={backend}", reason=f"raised: {common.short_reason(exc)}"))
                continue
            row = dict(model=name, backend=backend, preset=preset, batch=batch, **t,
                       step_ms=t["median_ms"], windows_per_s=batch / (t["median_ms"] * 1e-3),
                       parameters=sum(p.numel() for p in model.parameters()),
                       peak_memory_mib=common.peak_memory_mib(device))
            rows.append(row)
            print(f"{name:14s} backend={backend:6s} {t['median_ms']:9.2f} ms/step {row['windows_per_s']:9.1f} win/s"
                  + (f" peak {row['peak_memory_mib']:.0f} MiB" if row["peak_memory_mib"] else ""), flush=True)
            model = opt = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
    flow = next((r["median_ms"] for r in rows if r["model"] == "flowfm" and r["backend"] == "auto"), None)
    for r in rows:
        r["step_time_vs_flowfm"] = None if flow is None else r["median_ms"] / flow
    payload = dict(device=device.type, quick=args.quick, preset=preset, batch=batch, window=300,
                   optimizer="AdamW(lr=1e-4, weight_decay=1e-2)", data="random windows (speed only)",
                   environment=env, rows=rows, unavailable=unavailable)
    common.write_result(args.out, "training", device, payload)
    return payload


if __name__ == "__main__":
    main()
