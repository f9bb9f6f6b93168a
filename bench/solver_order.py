"""Observed order of the ODE solvers on FlowFM's own velocity field, in float64 (issue 20), and what the Euler FFD
of the generation sweep measures.

``python -m bench.solver_order [--checkpoint MODEL ...] [--ffd MODEL]`` (defaults: 7 CPU-minutes on one thread)

Order (``solver_order_cpu.json``). The field is v(x, t, z) of a FlowFM in float64: the ``--preset`` network with
every weight perturbed by ``--perturb`` N(0, 1) (so the field is not trivially zero: the output conv starts at
zero), eval mode, fixed z (B, D) ~ N(0, I) and x0 (B, C, L) ~ N(0, I), built once per ``time_embedding_scale`` a of
``--scales`` (the embedding is sinusoidal(a t); 1000 is what configs written before the field meant, 1 the new
default); or a trained model (``--checkpoint``, its own a, z = rows of its representation bank). For each method
and step count n of ``--steps``, through :func:`flowfm.solvers.integrate` (the library's solvers):

    e_n = ||x_n - x_ref|| / ||x_ref||   (relative L2 over the whole batch),   x_ref = RK4 with ``--ref-steps`` steps
    p_n = log2(e_n / e_2n)              (observed order between n and 2n steps)

Diagnostics per field, to rule the issue's candidate causes in or out:
``t_roughness``: on a grid of 1/2048 in t, h |dv/dt| / |v| and h^2 |d2v/dt2| / |v| at h = 1/16 (the relative change
of v across one 16-step interval to first and second order), max over t in [0, 0.05], [0.45, 0.55] and [0.95, 1]
(behaviour near t = 0 and t = 1 with sigma_min = 0); ``batch_independence``: max |v(x)[i] - v(x[i:i+1])| (the
GroupNorm statistics are per sample; BatchNorm sits in the encoder, which a fixed z bypasses);
``float32_embedding_error``: max |sinusoidal(a t) in float32 - in float64| over the grid (the precision t lost before
the embedding followed the model's dtype).

Euler FFD (``--ffd MODEL`` -> ``solver_order_ffd_hapt_cpu.json``). The generation sweep's conditioning set (HAPT,
``--n`` windows, seed 0) and noise, then per setting (Euler / Heun at each step count, RK4 at ``--ffd-ref-steps``):
the feature Frechet distance to the conditioning windows (as the sweep) and the relative L2 distance of the
samples to the RK4 samples of the same z and x0 (the distance to the ODE solution the samplers approximate).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from flowfm.data.atomic import atomic_write_text
from flowfm.environment import environment
from flowfm.solvers import METHODS, integrate

EXPECTED_ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
ROUGHNESS_WINDOWS = ((0.0, 0.05), (0.45, 0.55), (0.95, 1.0))


def perturbed_model(preset: str, scale: float, perturb: float, seed: int, length: int):
    """A float64 eval-mode FlowFM whose every weight got ``perturb`` N(0, 1) added (seeded)."""
    from flowfm.config import FlowFMConfig
    from flowfm.model import FlowFM

    torch.manual_seed(seed)
    model = FlowFM(FlowFMConfig(preset=preset, window=length, time_embedding_scale=scale)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(perturb * torch.randn_like(p))
    return model


def model_field(model, z: torch.Tensor) -> Callable:
    def field(x, t):
        return model.velocity(x, t, z), None
    return field


def order_sweep(field: Callable, x0: torch.Tensor, steps: list[int], ref_steps: int,
                methods=METHODS) -> dict:
    """{method: {steps, errors, orders}} and the reference's cost (see the module docstring)."""
    ref = integrate(field, x0, ref_steps, "rk4", backend="eager")
    out = {}
    for method in methods:
        errors = [float((integrate(field, x0, n, method, backend="eager") - ref).norm() / ref.norm())
                  for n in steps]
        orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
        out[method] = dict(steps=steps, errors=errors, orders=orders, expected_order=EXPECTED_ORDER[method])
    return out


def t_roughness(model, x: torch.Tensor, z: torch.Tensor, points: int = 2048, h: float = 1.0 / 16) -> dict:
    """Relative first / second differences of v along t at fixed x (module docstring)."""
    ts = torch.linspace(0.0, 1.0, points + 1, dtype=torch.float64)
    dt = 1.0 / points
    vs = torch.stack([model.velocity(x, t.expand(x.shape[0]), z).flatten() for t in ts])
    norm = vs.norm(dim=1).clamp_min(1e-300)
    d1 = (vs[1:] - vs[:-1]).norm(dim=1) / dt * h / norm[:-1]
    d2 = (vs[2:] - 2 * vs[1:-1] + vs[:-2]).norm(dim=1) / dt ** 2 * h ** 2 / norm[1:-1]
    out = {}
    for lo, hi in ROUGHNESS_WINDOWS:
        m1 = (ts[:-1] >= lo) & (ts[:-1] <= hi)
        m2 = (ts[1:-1] >= lo) & (ts[1:-1] <= hi)
        out[f"t_in_[{lo},{hi}]"] = dict(h_dv_dt_rel=float(d1[m1].max()), h2_d2v_dt2_rel=float(d2[m2].max()))
    return out


def batch_independence(model, x: torch.Tensor, z: torch.Tensor) -> float:
    t = torch.full((x.shape[0],), 0.37, dtype=x.dtype)
    v = model.velocity(x, t, z)
    return max(float((v[i:i + 1] - model.velocity(x[i:i + 1], t[i:i + 1], z[i:i + 1])).abs().max())
               for i in range(x.shape[0]))


def float32_embedding_error(scale: float, dim: int, points: int = 2048) -> float:
    from flowfm.velocity import sinusoidal_embedding

    t = torch.linspace(0.0, 1.0, points + 1, dtype=torch.float64)
    e64 = sinusoidal_embedding(t, dim, scale=scale)
    e32 = sinusoidal_embedding(t.float(), dim, scale=scale)
    return float((e64 - e32.double()).abs().max())


def field_report(model, z, x0, steps, ref_steps) -> dict:
    started = time.perf_counter()
    with torch.inference_mode():
        field = model_field(model, z)
        result = dict(time_embedding_scale=model.config.time_embedding_scale, dtype=str(model.null_z.dtype),
                      solvers=order_sweep(field, x0, steps, ref_steps),
                      t_roughness=t_roughness(model, x0[:1], z[:1]),
                      batch_independence_max_abs=batch_independence(model, x0, z),
                      float32_embedding_error=float32_embedding_error(model.config.time_embedding_scale,
                                                                      model.velocity_net.time_dim))
    result["seconds"] = time.perf_counter() - started
    return result


def load_float64(path: str):
    from flowfm.checkpoint import load_model

    return load_model(path).double().eval()


def ffd_analysis(path: str, n: int, euler_steps: list[int], heun_steps: list[int], ref_steps: int,
                 batch_size: int = 64) -> dict:
    """FFD and distance to the RK4 solution per setting, on the generation sweep's conditioning set and noise."""
    from flowfm.evaluation.generation import feature_frechet_distance
    from flowfm.evaluation.generation_sweep import Setting, conditioning_split, encode, sample_setting
    from flowfm.checkpoint import load_model
    from flowfm.solvers import nfe

    model = load_model(path).eval()
    cond = conditioning_split("hapt", n=n, seed=0)
    z = encode(model, cond.x)
    settings = ([("euler", s) for s in euler_steps] + [("heun", s) for s in heun_steps])
    ref, ref_seconds, _ = sample_setting(model, z, Setting("flowfm", "rk4", ref_steps, nfe("rk4", ref_steps)),
                                         batch_size=batch_size)
    ref_t = torch.from_numpy(ref).double()
    rows = [dict(method="rk4", steps=ref_steps, nfe=nfe("rk4", ref_steps), seconds=ref_seconds,
                 frechet=feature_frechet_distance(cond.x, ref), rel_l2_to_rk4=0.0)]
    for method, steps in settings:
        x, seconds, _ = sample_setting(model, z, Setting("flowfm", method, steps, nfe(method, steps)),
                                       batch_size=batch_size)
        rows.append(dict(method=method, steps=steps, nfe=nfe(method, steps), seconds=seconds,
                         frechet=feature_frechet_distance(cond.x, x),
                         rel_l2_to_rk4=float((torch.from_numpy(x).double() - ref_t).norm() / ref_t.norm())))
        print(f"ffd {method} {steps}: FFD {rows[-1]['frechet']:.1f}, rel L2 to RK4-{ref_steps} "
              f"{rows[-1]['rel_l2_to_rk4']:.3g}", flush=True)
    return dict(checkpoint=str(path), config=dataclasses.asdict(model.config), n=len(cond.x),
                conditioning_sha256=cond.sha256, reference=f"rk4-{ref_steps}", rows=rows)


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--scales", default="1000,1", help="time_embedding_scale values of the perturbed models")
    p.add_argument("--perturb", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=64, help="window length L of the fields' inputs")
    p.add_argument("--steps", default="4,8,16,32,64")
    p.add_argument("--ref-steps", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", nargs="*", default=[], help="trained models whose own field is measured too")
    p.add_argument("--ffd", default=None, help="a trained model: the Euler-FFD analysis (HAPT)")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--ffd-euler", default="1,2,4,8,16,32,64")
    p.add_argument("--ffd-heun", default="1,2,4,8,16,32")
    p.add_argument("--ffd-ref-steps", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--skip-order", action="store_true")
    p.add_argument("--name", default="solver_order_cpu", help="stem of the order result file")
    p.add_argument("--ffd-name", default="solver_order_ffd_hapt_cpu", help="stem of the FFD result file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    steps = _ints(args.steps)
    if not args.skip_order:
        fields = {}
        gen = torch.Generator().manual_seed(args.seed + 1)
        for scale in (float(s) for s in args.scales.split(",") if s):
            model = perturbed_model(args.preset, scale, args.perturb, args.seed, args.length)
            z = torch.randn(args.batch, model.z_dim, generator=gen, dtype=torch.float64)
            x0 = torch.randn(args.batch, model.config.in_channels, args.length, generator=gen, dtype=torch.float64)
            fields[f"perturbed {args.preset}, time_embedding_scale={scale:g}"] = field_report(
                model, z, x0, steps, args.ref_steps)
            print(json.dumps(fields[list(fields)[-1]]["solvers"]), flush=True)
        for path in args.checkpoint:
            model = load_float64(path)
            bank = model.z_bank
            z = (bank[:args.batch] if bank.shape[0] >= args.batch
                 else torch.randn(args.batch, model.z_dim, generator=gen, dtype=torch.float64))
            x0 = torch.randn(args.batch, model.config.in_channels, args.length, generator=gen, dtype=torch.float64)
            fields[f"trained {path}"] = field_report(model, z, x0, steps, args.ref_steps)
            print(json.dumps(fields[list(fields)[-1]]["solvers"]), flush=True)
        payload = dict(suite="solver_order", schema=1, argv=vars(args), definition=__doc__, fields=fields,
                       environment=environment())
        atomic_write_text(out / f"{args.name}.json", json.dumps(payload, indent=1))
    if args.ffd:
        result = ffd_analysis(args.ffd, args.n, _ints(args.ffd_euler), _ints(args.ffd_heun), args.ffd_ref_steps)
        payload = dict(suite="solver_order_ffd", schema=1, argv=vars(args), **result, environment=environment())
        atomic_write_text(out / f"{args.ffd_name}.json", json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
