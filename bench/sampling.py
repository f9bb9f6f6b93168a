"""Sampling benchmark: FlowFM ``fast_sample`` (Euler / Heun at several NFE) against the DDPM baseline's DDIM and
DDPM-1000, side by side in one run, each setting's speed next to its generation quality when trained models are given.

    python -m bench.sampling [--quick] [--out bench/results] [--device cpu|cuda] [--preset small] [--batches 1,64]
                             [--flow-checkpoint RUN/model] [--diffusion-checkpoint RUN/model] [--quality-n 256]

Without checkpoints the models have RANDOM weights (the FlowFM / DiffusionFM of ``--preset``): speed only (the network
does the same work whatever its weights), quality columns "n/a (random weights)", samples conditioned on z = E(random
windows). With ``--flow-checkpoint`` / ``--diffusion-checkpoint`` the trained models are timed on z = E(HAPT windows)
and every (model, sampler, steps) setting also gets its generation quality, measured once (it does not depend on the
timing batch) with :mod:`flowfm.evaluation.generation_sweep`: ``--quality-n`` conditioning windows of training
subjects (seeded, subject-wise split), generated in batches of ``--quality-batch``: feature Frechet distance (FFD),
discriminative score, TSTR macro-F1 and reconstruction r. The encoder runs once, outside the timing.

On CUDA each configuration runs with ``cuda_graph=False`` (eager loop, fused kernels) and, where the sampler has a
graph path, ``cuda_graph=True`` (the whole loop replayed as one CUDA graph); the first call (capture) is reported
separately, with ``flowfm_kernels.graphs.stats()``'s capture times. A row's ``cuda_graph`` says what ran, not what
was asked for: it is true only when ``graphs.stats()`` counted replays during the timing. The diffusion baseline
samples through its own ``generate()``, which ``fast_sample`` returns before the graph path, so its
``cuda_graph=True`` call is the eager loop again: a one-call probe finds no capture and the setting is listed in
``unavailable`` instead of a row (:func:`graph_path`). Full run: batches 1 / 64 / 256 (and 1024 on CUDA), Euler
2 / 10 / 50 and Heun 5 steps (``--flow``), DDIM 10 / 50 / 100 (``--ddim``) and DDPM-1000. Quick: batch 1 and 8,
Euler and Heun 2 steps, DDIM-4, no DDPM. Speed-ups are against DDPM-1000 at the same batch (eager loop), or, when
DDPM was not run, against the largest DDIM measured (``speedup_reference`` says which). With quality, each batch
also gets ``equal_quality``: the fastest setting whose FFD is <= the reference's and its speed-up ("x times faster
at equal quality"). Writes ``<out>/sampling_<device>.json``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench import common
from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM
from flowfm.config import FlowFMConfig
from flowfm.model import FlowFM
from flowfm.sampling import fast_sample
from flowfm.solvers import METHODS, nfe as flow_nfe
from flowfm_kernels import graphs


def _configs(quick: bool, device: torch.device):
    if quick:
        return dict(batches=[1, 8], flow=[("euler", 2), ("heun", 2)], ddim=[4], ddpm=False)
    return dict(batches=[1, 64, 256] + ([1024] if device.type == "cuda" else []),
                flow=[("euler", 2), ("euler", 10), ("euler", 50), ("heun", 5)], ddim=[10, 50, 100], ddpm=True)


def _flow_list(text: str) -> list[tuple[str, int]]:
    """"euler:2,heun:5" -> [("euler", 2), ("heun", 5)]."""
    out = []
    for item in text.split(","):
        method, _, steps = item.strip().partition(":")
        if method not in METHODS or not steps.isdigit() or int(steps) < 1:
            raise SystemExit(f"--flow expects METHOD:STEPS items with METHOD in {METHODS}, got {item!r}")
        out.append((method, int(steps)))
    return out


def graph_modes(device: torch.device) -> list[bool]:
    """The ``cuda_graph`` settings to time: the eager loop everywhere, the captured graph on CUDA."""
    return [False, True] if device.type == "cuda" else [False]


def graph_path(model, z, steps: int, method: str) -> bool:
    """Whether ``fast_sample(model, ..., cuda_graph=True)`` runs a captured graph: one call on the first condition
    (``graphs.stats()`` counts a capture or a replay). False for samplers that bypass the graph path (the
    diffusion baseline's own ``generate()``)."""
    graphs.reset_stats()
    fast_sample(model, z=z[:1], steps=steps, method=method, cuda_graph=True,
                generator=torch.Generator(device=z.device).manual_seed(0))
    st = graphs.stats()
    return st["captures"] + st["hits"] > 0


def time_sample(model, z, steps, method, cuda_graph, device, repeats):
    """:func:`bench.common.time_fn` of one ``fast_sample`` call, plus the graph counters of the timed calls."""
    graphs.reset_stats()
    gen = torch.Generator(device=device).manual_seed(0)

    def call():
        return fast_sample(model, z=z, steps=steps, method=method, cuda_graph=cuda_graph, generator=gen)

    t = common.time_fn(call, device, warmup=2, repeats=repeats)
    st = graphs.stats()
    t["graph_captures"] = st["captures"]
    t["graph_hits"] = st["hits"]
    t["graph_failures"] = st["failures"]
    t["graph_fallbacks"] = st["fallbacks"]
    t["graph_capture_s_total"] = st["capture_s_total"]
    if st["last_capture"]:
        t["graph_last_capture"] = {k: v for k, v in st["last_capture"].items() if k in
                                   ("warmup_s", "capture_s", "first_call_s")}
    return t


def _load_models(args, device):
    """(flow, diffusion, trained {name: checkpoint or None}): checkpoints where given, else random weights."""
    from flowfm.checkpoint import load_model

    models, trained = {}, {}
    for name, path, cls, cfg in (("flowfm", args.flow_checkpoint, FlowFM, FlowFMConfig),
                                 ("diffusion", args.diffusion_checkpoint, DiffusionFM, DiffusionConfig)):
        if path:
            model = load_model(path, map_location=device)
            if model.method != name:
                raise SystemExit(f"--{'flow' if name == 'flowfm' else 'diffusion'}-checkpoint {path} holds a "
                                 f"{model.method!r} model")
        else:
            model = cls(cfg(preset=args.preset))
        models[name], trained[name] = model.to(device).eval(), path
    return models["flowfm"], models["diffusion"], trained


class _Quality:
    """Generation quality of each (model, method, steps), computed once on the shared conditioning set."""

    def __init__(self, cond, seed: int, batch: int):
        self.cond, self.seed, self.batch, self.cache, self.z = cond, seed, batch, {}, {}

    def __call__(self, name: str, model, method: str, steps: int, nfe: int) -> dict:
        from flowfm.evaluation.generation_sweep import Setting, encode, sample_setting, setting_quality

        key = (name, method, steps)
        if key not in self.cache:
            if name not in self.z:
                self.z[name] = encode(model, self.cond.x)
            x, seconds, _ = sample_setting(model, self.z[name], Setting(name, method, steps, nfe), seed=self.seed,
                                           batch_size=self.batch)
            q = setting_quality(self.cond, x, seed=self.seed)
            q.update(quality="measured", quality_n=len(x), quality_sampling_s=seconds)
            self.cache[key] = q
            print(f"  quality {name} {method}-{steps}: FFD {q['frechet']:.3f}, disc {q['discriminative_score']:.3f}, "
                  f"TSTR {q['tstr_macro_f1']:.3f} ({len(x)} windows, {seconds:.1f} s)", flush=True)
        return self.cache[key]


def _equal_quality(rows: list[dict], batches: list[int]) -> list[dict]:
    """Per batch: the fastest setting at FFD <= the speed-up reference's FFD (both measured), and its speed-up."""
    from flowfm.evaluation.generation_sweep import equal_quality_speedup

    out = []
    for b in batches:
        same = [r for r in rows if r["batch"] == b and r.get("frechet") is not None]
        ref = next((r for r in same if r.get("is_speedup_reference")), None)
        if ref is None:
            continue
        best = equal_quality_speedup(same, ref, time_key="median_ms")
        entry = dict(batch=b, reference=ref["speedup_reference"], reference_frechet=ref["frechet"])
        if best is None:
            entry.update(setting=None, speedup=None, note="no other setting reaches the reference's FFD")
        else:
            r = best["row"]
            entry.update(setting=f"{r['model']} {r['method']}-{r['steps']} (NFE {r['nfe']}, CUDA graph "
                                 f"{'on' if r['cuda_graph'] else 'off'})", frechet=r["frechet"],
                         speedup=best["speedup"])
        out.append(entry)
    return out


def main(argv=None) -> dict:
    parser = common.make_parser(__doc__)
    parser.add_argument("--preset", default="small", help="preset of the random-weight models")
    parser.add_argument("--batches", default=None,
                        help="comma-separated batch sizes instead of the suite's (e.g. 1,64 on a slow CPU; "
                             "1,64,256,1024 on a GPU)")
    parser.add_argument("--flow", default=None, help="flow settings METHOD:STEPS,... (default euler:2,euler:10,"
                                                     "euler:50,heun:5)")
    parser.add_argument("--ddim", default=None, help="DDIM steps, comma-separated (default 10,50,100)")
    parser.add_argument("--ddpm", action=argparse.BooleanOptionalAction, default=None,
                        help="run DDPM-1000 (default: on, off in --quick)")
    parser.add_argument("--flow-checkpoint", default=None, help="trained FlowFM model folder (adds quality)")
    parser.add_argument("--diffusion-checkpoint", default=None, help="trained diffusion model folder (adds quality)")
    parser.add_argument("--data", default="hapt", help="conditioning data with checkpoints: 'hapt' or a folder")
    parser.add_argument("--quality-n", type=int, default=None, help="windows per quality measurement (256; quick 32)")
    parser.add_argument("--quality-batch", type=int, default=64, help="batch of the quality sampling runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = common.resolve_device(args.device, args.threads)
    cfg = _configs(args.quick, device)
    if args.batches:
        cfg["batches"] = [int(b) for b in args.batches.split(",")]
    if args.flow:
        cfg["flow"] = _flow_list(args.flow)
    if args.ddim:
        cfg["ddim"] = [int(s) for s in args.ddim.split(",")]
    if args.ddpm is not None:
        cfg["ddpm"] = args.ddpm
    repeats = args.repeats or (3 if args.quick else 10)
    torch.manual_seed(0)
    env = common.environment(device)
    ceil = common.ceilings(device, args.quick) if device.type == "cuda" else None
    flow, diff, trained = _load_models(args, device)
    quality, cond = None, None
    if any(trained.values()):
        from flowfm.evaluation.generation_sweep import conditioning_split, reference_quality

        n = args.quality_n or (32 if args.quick else 256)
        cond = conditioning_split(args.data, n=n, seed=args.seed, max_test=256 if args.quick else None)
        quality = _Quality(cond, args.seed, args.quality_batch)
    modes = graph_modes(device)
    rows, unavailable = [], []
    has_graph: dict[tuple[str, str], bool] = {}
    if device.type != "cuda":
        unavailable.append(dict(what="cuda_graph=True", reason="CUDA graphs need a CUDA device"))
    if not cfg["ddpm"]:
        unavailable.append(dict(what="ddpm-1000", reason="skipped in --quick (1000 network evaluations)"
                                if args.quick else "skipped (--no-ddpm)"))
    for b in cfg["batches"]:
        with torch.inference_mode():
            if cond is None:
                x_ref = torch.randn(b, flow.config.in_channels, flow.config.window, device=device)
            else:  # the conditioning windows, repeated up to the batch
                x_ref = torch.from_numpy(cond.x[np.arange(b) % len(cond.x)]).to(device)
            z_flow, z_diff = flow.encode(x_ref).clone(), diff.encode(x_ref).clone()
        cases = [("flowfm", flow, z_flow, m, s, flow_nfe(m, s)) for m, s in cfg["flow"]]
        cases += [("diffusion", diff, z_diff, "ddim", s, diff.nfe("ddim", s)) for s in cfg["ddim"]]
        if cfg["ddpm"]:
            cases.append(("diffusion", diff, z_diff, "ddpm", diff.config.T, diff.nfe("ddpm", diff.config.T)))
        for model_name, model, z, method, steps, nfe in cases:
            for g in modes:
                what = f"{model_name} {method}-{steps} batch {b} cuda_graph=True"
                if method == "ddpm" and g:
                    unavailable.append(dict(what=f"ddpm-1000 cuda_graph=True batch {b}",
                                            reason="not measured: 1000-step graph capture; eager loop only"))
                    continue
                if g and (model_name, method) not in has_graph:
                    try:
                        has_graph[(model_name, method)] = graph_path(model, z, 1, method)
                    except Exception as exc:
                        has_graph[(model_name, method)] = False
                        unavailable.append(dict(what=f"{model_name} {method} cuda_graph=True",
                                                reason=f"graph probe raised: {common.short_reason(exc)}"))
                if g and not has_graph[(model_name, method)]:
                    unavailable.append(dict(what=what, reason=(
                        "no CUDA graph: this sampler bypasses the graph path (fast_sample returns the model's "
                        "own generate(), an eager loop), so a 'graph' row would be the eager loop again")))
                    continue
                reps = max(2, repeats // 3) if method == "ddpm" else repeats
                t0 = time.perf_counter()
                try:
                    t = time_sample(model, z, steps, method, g, device, reps)
                except Exception as exc:
                    unavailable.append(dict(what=f"{model_name} {method}-{steps} batch {b} cuda_graph={g}",
                                            reason=f"raised: {common.short_reason(exc)}"))
                    continue
                if g and not (t["graph_hits"] > 0 and t["graph_fallbacks"] == 0):
                    unavailable.append(dict(what=what, reason=(
                        f"no CUDA graph replayed during the timing (captures {t['graph_captures']}, hits "
                        f"{t['graph_hits']}, fallbacks {t['graph_fallbacks']}, failures {t['graph_failures']}): "
                        "the eager loop ran, so no graph row")))
                    continue
                row = dict(model=model_name, method=method, steps=steps, nfe=nfe, batch=b, cuda_graph=g, **t,
                           windows_per_s=b / (t["median_ms"] * 1e-3), latency_ms=t["median_ms"],
                           ms_per_nfe=t["median_ms"] / nfe, wall_s=time.perf_counter() - t0,
                           checkpoint=trained[model_name])
                if trained[model_name]:
                    row.update(quality(model_name, model, method, steps, nfe))
                else:
                    row.update(frechet=None, discriminative_score=None, quality="n/a (random weights)")
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
        ref["is_speedup_reference"] = True
        eager_loop = {(r["model"], r["method"], r["steps"]): r["median_ms"] for r in same if not r["cuda_graph"]}
        for r in same:
            r["speedup_vs_reference"] = ref["median_ms"] / r["median_ms"]
            r["speedup_reference"] = label
            if r.get("frechet") is not None and ref.get("frechet") is not None:
                r["frechet_le_reference"] = bool(r["frechet"] <= ref["frechet"])
            key = (r["model"], r["method"], r["steps"])
            if r["cuda_graph"] and key in eager_loop:
                r["speedup_graph_vs_eager_loop"] = eager_loop[key] / r["median_ms"]
    weights = ("random (untrained): speed only, not generation quality" if not any(trained.values()) else
               "; ".join(f"{k}: {'trained, ' + v if v else 'random (untrained), no quality'}"
                         for k, v in trained.items()))
    payload = dict(device=device.type, quick=args.quick, preset=args.preset, environment=env, ceilings=ceil,
                   weights=weights, checkpoints=trained,
                   flow_parameters=flow.num_parameters(), diffusion_parameters=diff.num_parameters(),
                   backend=flow.backend, rows=rows, unavailable=unavailable)
    if cond is not None:
        payload["quality_setup"] = dict(data=args.data, seed=args.seed, batch=args.quality_batch,
                                        conditioning=cond.describe(),
                                        reference=reference_quality(cond, seed=args.seed),
                                        metrics="frechet = feature Frechet distance to the conditioning windows; "
                                                "discriminative_score = |0.5 - real-vs-synthetic accuracy|; lower "
                                                "is better for both (flowfm.evaluation.generation_sweep)")
        payload["equal_quality"] = _equal_quality(rows, cfg["batches"])
    common.write_result(args.out, "sampling", device, payload)
    return payload


if __name__ == "__main__":
    main()
