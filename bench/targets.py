"""docs/design.md §7 targets read off the benchmark JSON: each gets the measured value and a status, "met",
"not met" or "not measured (reason)". A GPU result is preferred over a CPU one where both exist.

    targets_table([(path, doc), ...]) -> markdown lines
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

BANDWIDTH_CASES = ("flow_matching_loss_fwd_bwd", "interpolate", "euler_step", "heun_correct")
FAST_BACKENDS = ("triton", "cuda")


def _pick(docs: list[tuple[Path, dict]], suite: str, device: Optional[str] = None) -> Optional[tuple[Path, dict]]:
    """The suite's result on ``device``, or (device None) on cuda if present, else cpu; full runs before quick."""
    cands = [(p, d) for p, d in docs if d.get("suite") == suite and (device is None or d.get("device") == device)]
    cands.sort(key=lambda pd: (pd[1].get("device") != "cuda", bool(pd[1].get("quick"))))
    return cands[0] if cands else None


def _x(v: float) -> str:
    return f"{v:.3g}x"


def _status(ok: bool) -> str:
    return "met" if ok else "not met"


def graph_vs_eager(docs) -> tuple[str, str]:
    pd = _pick(docs, "sampling", "cuda")
    if pd is None:
        return "-", "not measured (no GPU sampling run: CUDA graphs need a CUDA device)"
    path, doc = pd
    rows = [r for r in doc["rows"] if r.get("speedup_graph_vs_eager_loop")]
    if not rows:
        return "-", f"not measured (no CUDA-graph row in `{path.name}`)"
    by_batch = {}
    for r in rows:
        by_batch.setdefault(r["batch"], []).append(r["speedup_graph_vs_eager_loop"])
    parts = [f"batch {b}: {_x(min(v))}-{_x(max(v))}" for b, v in sorted(by_batch.items())]
    met = [b for b, v in sorted(by_batch.items()) if min(v) >= 3]
    status = _status(len(met) == len(by_batch)) if not met or len(met) == len(by_batch) else \
        f"met at batch {', '.join(map(str, met))} only"
    return (f"CUDA graph vs eager loop (fused kernels in both, so a lower bound on kernels + graph vs plain eager), "
            f"flow settings min-max: {'; '.join(parts)} (`{path.name}`)"), status


def ddpm_at_equal_quality(docs) -> tuple[str, str]:
    sampling = [(p, d) for p, d in docs if d.get("suite") == "sampling"]
    with_q = [(p, d) for p, d in sampling if d.get("equal_quality")]
    if with_q:
        with_q.sort(key=lambda pd: (pd[1].get("device") != "cuda", bool(pd[1].get("quick"))))
        path, doc = with_q[0]
        eq = [e for e in doc["equal_quality"] if "ddpm" in e["reference"]]
        if not eq:
            return "-", f"not measured (DDPM-1000 not run in `{path.name}`)"
        parts = [f"batch {e['batch']}: " + (f"{_x(e['speedup'])} ({e['setting']}, FFD {e['frechet']:.3g} <= "
                                            f"{e['reference_frechet']:.3g})" if e.get("speedup")
                                            else "no setting reaches DDPM-1000's FFD") for e in eq]
        ok = [e for e in eq if e.get("speedup") and e["speedup"] >= 100]
        status = _status(len(ok) == len(eq)) if not ok or len(ok) == len(eq) else \
            f"met at batch {', '.join(str(e['batch']) for e in ok)} only"
        return f"{'; '.join(parts)} ({doc.get('device')}, `{path.name}`)", status
    sweeps = [(p, d) for p, d in docs if d.get("suite") == "generation_sweep" and not d.get("quick")
              and any(r["method"] == "ddpm" for r in d["rows"])]
    if sweeps:
        path, doc = sweeps[0]
        ok = [r for r in doc["rows"] if r["model"] == "flowfm" and r.get("ffd_le_ddpm")]
        ddpm = next(r for r in doc["rows"] if r["method"] == "ddpm")
        if not ok:
            return f"no flow setting reaches DDPM-1000's FFD {ddpm['frechet']:.3g} (`{path.name}`)", "not met"
        best = max(ok, key=lambda r: r["speedup_vs_ddpm"])
        good = min((r for r in doc["rows"] if r["model"] == "flowfm"), key=lambda r: r["frechet"])
        return (f"{_x(best['speedup_vs_ddpm'])} ({best['method']}-{best['steps']}, NFE {best['nfe']}, FFD "
                f"{best['frechet']:.3g} <= DDPM-1000's {ddpm['frechet']:.3g}); the best flow setting "
                f"({good['method']}-{good['steps']}, FFD {good['frechet']:.3g}) is {_x(good['speedup_vs_ddpm'])}; "
                f"trained models, batch {doc['batch_size']}, {doc['environment'].get('device')} "
                f"(`{path.name}`; DDPM under-trained at the equal budget, see docs/results.md)"), \
            _status(best["speedup_vs_ddpm"] >= 100)
    pd = _pick(docs, "sampling")
    if pd is None:
        return "-", "not measured (no sampling result)"
    path, doc = pd
    ddpm_rows = [r for r in doc["rows"] if "ddpm" in str(r.get("speedup_reference")) and r["model"] == "flowfm"]
    if not ddpm_rows:
        return "-", f"not measured (DDPM-1000 not run in `{path.name}`)"
    best = max(ddpm_rows, key=lambda r: r["speedup_vs_reference"])
    return (f"speed side only: up to {_x(best['speedup_vs_reference'])} ({best['method']}-{best['steps']}, NFE "
            f"{best['nfe']}, batch {best['batch']}, {doc.get('device')}, `{path.name}`)",
            "not measured (random weights: no quality; run `python -m bench.sampling --flow-checkpoint ... "
            "--diffusion-checkpoint ...`)")


def _kernel_rows(doc: dict, case: str) -> list[dict]:
    rows = [r for r in doc["rows"] if r["case"] == case]
    if not rows:
        return []
    largest = max(r["B"] * r["C"] * r["L"] for r in rows)
    return [r for r in rows if r["B"] * r["C"] * r["L"] == largest]


def bandwidth(docs) -> tuple[str, str]:
    pd = _pick(docs, "kernels", "cuda")
    if pd is None:
        return "-", "not measured (no GPU kernels run: the fraction of copy bandwidth is a GPU target)"
    path, doc = pd
    parts, ok = [], True
    for case in BANDWIDTH_CASES:
        fast = [r for r in _kernel_rows(doc, case) if r["backend"] in FAST_BACKENDS and r.get("frac_copy_bw")]
        if not fast:
            parts.append(f"{case}: no triton/cuda row")
            ok = False
            continue
        best = max(fast, key=lambda r: r["frac_copy_bw"])
        parts.append(f"{case} {100 * best['frac_copy_bw']:.0f} % ({best['backend']})")
        ok &= best["frac_copy_bw"] >= 0.8
    return f"largest size: {'; '.join(parts)} (`{path.name}`)", _status(ok)


def gn_film_silu(docs) -> tuple[str, str]:
    pd = _pick(docs, "kernels", "cuda")
    if pd is None:
        return "-", "not measured (no GPU kernels run: triton / cuda kernels need a CUDA device)"
    path, doc = pd
    rows = _kernel_rows(doc, "gn_film_silu_fwd")
    fast = [r for r in rows if r["backend"] in FAST_BACKENDS and r.get("speedup_vs_eager")]
    if not fast:
        return "-", f"not measured (no triton/cuda gn_film_silu_fwd row in `{path.name}`)"
    best = max(fast, key=lambda r: r["speedup_vs_eager"])
    comp = next((r for r in rows if r["backend"] == "compile"), None)
    text = f"{_x(best['speedup_vs_eager'])} eager ({best['backend']}, largest size)"
    if comp is None:
        return text + " ; torch.compile not measured", "not measured (torch.compile row missing)"
    vs = comp["median_ms"] / best["median_ms"]
    return f"{text}, {_x(vs)} torch.compile (`{path.name}`)", _status(best["speedup_vs_eager"] >= 2 and vs > 1)


def training_time_to_quality(docs) -> tuple[str, str]:
    pd = _pick(docs, "training")
    step = ""
    if pd is not None:
        diff = next((r for r in pd[1]["rows"] if r["model"] == "diffusion" and r.get("step_time_vs_flowfm")), None)
        if diff:
            step = (f"per-step cost: diffusion / flow = {diff['step_time_vs_flowfm']:.3g} ({pd[1].get('device')}, "
                    f"`{pd[0].name}`)")
    ttq = [(p, d) for p, d in docs if d.get("suite") == "time_to_quality"]
    if ttq:
        path, doc = ttq[0]
        n, reached, ratio = len(doc["per_seed"]), doc["reached"], doc["time_ratio_mean"]
        text = (f"{doc['method']} reached {doc['baseline']}'s final probe F1 in {reached}/{n} seeds"
                + (f", mean time ratio {ratio:.2f} / epoch ratio {doc['epoch_ratio_mean']:.2f} over those"
                   if ratio is not None else "") + f" (`{path.name}`)")
        met = reached == n and ratio is not None and ratio <= 0.5
        return (f"{text}; {step}" if step else text), _status(met)
    return step or "-", ("not measured (needs probe F1 over training time for both methods: `flowfm compare` "
                         "writes time_to_quality.json)")


def cpu_batch1_peer(docs) -> tuple[str, str]:
    return "-", ("not measured (bench.sampling does not run flow_matching's ODESolver; the peer runs at parity with "
                 "the eager loop, so the eager-loop rows stand in for it)")


def cpu_bf16(docs) -> tuple[str, str]:
    return "-", "not measured (bench.sampling times fp32 only)"


TARGETS = [
    ("fast_sample (kernels + graph) >= 3x eager at the same NFE (GPU)", graph_vs_eager),
    ("fast_sample >= 100x DDPM-1000 at equal or better generation quality (FFD)", ddpm_at_equal_quality),
    ("loss and step kernels >= 80 % of measured copy bandwidth at large sizes (GPU)", bandwidth),
    ("GN+FiLM+SiLU >= 2x eager and faster than torch.compile (GPU)", gn_film_silu),
    ("flow-matching training reaches the diffusion model's final probe F1 in <= 50 % of its wall time",
     training_time_to_quality),
    ("CPU, batch 1: fast_sample >= 3x flow_matching's ODESolver at the same NFE", cpu_batch1_peer),
    ("CPU, batch 256: bf16 at equal generation quality", cpu_bf16),
]


def targets_table(docs: list[tuple[Path, dict]]) -> list[str]:
    lines = ["| target (design §7) | measured | status |", "|---|---|---|"]
    for name, fn in TARGETS:
        measured, status = fn(docs)
        lines.append(f"| {name} | {measured} | {status} |")
    return lines
