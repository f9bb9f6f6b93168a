"""Benchmark plots (matplotlib Agg, PNG written atomically). The quality-vs-time scatter is
:func:`flowfm.evaluation.generation_sweep.plot_quality_vs_time`, shared with ``flowfm evaluate-generation``."""
from __future__ import annotations

from pathlib import Path

from flowfm.plots import save_figure

STYLE = {"euler": ("o", "-"), "heun": ("s", "-"), "midpoint": ("D", "-"), "rk4": ("P", "-"),
         "ddim": ("^", "--"), "ddpm": ("*", "--")}


def plot_speedup_vs_batch(doc: dict, path) -> Path:
    """Sampling result ``doc`` -> one line per (model, method, steps, CUDA graph): speed-up over the batch's
    reference (``speedup_vs_reference``: DDPM-1000, else the largest DDIM) against batch size, both axes log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[tuple, list[tuple[int, float]]] = {}
    for r in doc["rows"]:
        if r.get("speedup_vs_reference") is None or r.get("is_speedup_reference"):
            continue
        key = (r["model"], r["method"], r["steps"], r["nfe"], bool(r["cuda_graph"]))
        lines.setdefault(key, []).append((r["batch"], r["speedup_vs_reference"]))
    refs = sorted({r["speedup_reference"] for r in doc["rows"] if r.get("speedup_reference")})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, method, steps, nfe, graph), pts in sorted(lines.items()):
        pts.sort()
        marker, ls = STYLE.get(method, ("x", ":"))
        ax.plot([b for b, _ in pts], [s for _, s in pts], marker=marker, ls=":" if graph else ls,
                label=f"{model} {method}-{steps} (NFE {nfe})" + (" graph" if graph else ""))
    ax.set_xscale("log", base=2)
    batches = sorted({b for pts in lines.values() for b, _ in pts})
    if batches:
        ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("speed-up (x)")
    dev = doc.get("environment", {}).get("device_name", doc.get("device"))
    ax.set_title(f"sampling speed-up vs {' / '.join(refs) or 'reference'}\n{dev}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
