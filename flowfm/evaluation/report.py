"""Rendering evaluation reports: a markdown table and a bar plot for a set of methods (``flowfm evaluate``,
``flowfm compare``).

Input everywhere: ``{method_name: report}`` with reports from
:func:`~flowfm.evaluation.protocol.evaluate_encoder`, and the names of the baseline rows (e.g. the random-init
frozen encoder and the supervised-from-scratch row, docs/design.md §5) against which every other row gets a paired
difference (:func:`~flowfm.evaluation.paired.paired_differences`; rows evaluated on another protocol get "-").
"""
from __future__ import annotations

import textwrap

from pathlib import Path
from typing import Iterable, Mapping

from flowfm.evaluation.paired import paired_differences

_METRIC_NAMES = {"macro_f1": "macro-F1", "kappa": "kappa", "subject_f1_mean": "per-subject F1"}


def _fmt(summary: dict) -> str:
    return f"{summary['mean']:.3f} ± {summary['sd']:.3f}"


def _regime(r: dict) -> str:
    k = r.get("label_subjects")
    return "all labels" if k is None else f"{k} label subject(s) x {r.get('draws')} draws"


def _settings(r: dict) -> str:
    cfg = r.get("fit_config") or {}
    folds = "LOSO" if r.get("loso") else "GroupKFold"
    parts = [f"data {r.get('data') or '?'}", f"{r['folds']} subject-wise folds ({folds})", _regime(r),
             f"seeds {len(r['seeds'])}"]
    if cfg:
        parts.append(f"max {cfg['max_epochs']} epochs, patience {cfg['patience']}")
    return ", ".join(parts)


def mode_label(report: dict) -> str:
    """A report's mode, with its readout when that is not the default z (e.g. ``"linear, stages"``)."""
    readout = report.get("readout", "z")
    return report["mode"] if readout == "z" else f"{report['mode']}, {readout}"


def markdown_table(reports: Mapping[str, dict], baselines: Iterable[str] = (), metric: str = "macro_f1") -> str:
    """Markdown: a settings line per distinct protocol, then one row per method with mode, macro-F1 / kappa /
    per-subject F1 (mean ± SD over seeds), epochs used, wall time, and per baseline the paired difference in
    ``metric`` (mean ± SD over (seed, draw) pairs, positive pairs / n, verdict: a tie when |mean| <= SD)."""
    if not reports:
        raise ValueError("no reports to tabulate")
    baselines = [b for b in baselines]
    for b in baselines:
        if b not in reports:
            raise ValueError(f"baseline {b!r} is not among the reports ({sorted(reports)})")
    settings = sorted({_settings(r) for r in reports.values()})
    lines = [f"Settings: {s}." for s in settings] + [""]
    header = ["method", "mode", "macro-F1", "kappa", "per-subject F1", "epochs", "wall s"]
    header += [f"Δ{_METRIC_NAMES.get(metric, metric)} vs {b}" for b in baselines]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in reports.items():
        s = r["summary"]
        epochs = "-" if not s.get("epochs") else f"{s['epochs']['mean']:.1f}"
        row = [name, mode_label(r), _fmt(s["macro_f1"]), _fmt(s["kappa"]), _fmt(s["subject_f1_mean"]), epochs,
               f"{r['seconds']:.0f}"]
        for b in baselines:
            if b == name:
                row.append("(baseline)")
                continue
            try:
                d = paired_differences(r, reports[b], metric)
            except ValueError:
                row.append("-")
                continue
            sd = "n/a" if d["n"] < 2 else f"{d['sd']:.3f}"
            row.append(f"{d['mean']:+.3f} ± {sd} ({d['n_positive']}/{d['n']} >0, {d['verdict']})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "± = SD over evaluation seeds; Δ = paired difference over (seed, draw) pairs, a tie when "
                  "|mean| <= SD of the differences."]
    return "\n".join(lines) + "\n"


def bar_plot(reports: Mapping[str, dict], path, baselines: Iterable[str] = (), metric: str = "macro_f1",
             title: str | None = None) -> Path:
    """PNG bar chart of ``metric`` per method (mean over seeds, error bar = SD over seeds); baseline bars are
    hatched; a bar over fewer seeds than the most any bar has says how many under its name. Written atomically;
    returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowfm.data.atomic import atomic_open

    if not reports:
        raise ValueError("no reports to plot")
    baselines = set(baselines)
    names = list(reports)
    means = [reports[n]["summary"][metric]["mean"] for n in names]
    sds = [reports[n]["summary"][metric]["sd"] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.6))
    bars = ax.bar(range(len(names)), means, yerr=sds, capsize=4,
                  color=["0.75" if n in baselines else "C0" for n in names], edgecolor="black")
    for bar, n in zip(bars, names):
        if n in baselines:
            bar.set_hatch("//")
    seeds = {n: len(reports[n].get("seeds", ())) for n in names}
    most = max(seeds.values())
    labels = [textwrap.fill(n.replace("-", "- "), 14).replace("- ", "-") + f"\n({mode_label(reports[n])})"
              + (f"\n{seeds[n]} seeds" if seeds[n] != most else "")
              for n in names]   # long row names wrap at their hyphens instead of running into each other
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylabel(f"{_METRIC_NAMES.get(metric, metric)} (mean ± SD over seeds)")
    low = min(m - s for m, s in zip(means, sds))
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, max(m + s for m, s in zip(means, sds)) + 0.05))
    ax.set_title(title or _settings(reports[max(seeds, key=seeds.get)]), fontsize=8)  # the most seeds
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path


def report_markdown(report: dict) -> str:
    """A single report as markdown: the table row plus a per-seed / per-draw breakdown."""
    lines = [markdown_table({report["model"]: report}), "| seed | draw | macro-F1 | kappa | per-subject F1 | "
             "epochs per fold | s |", "|---|---|---|---|---|---|---|"]
    for s in report["per_seed"]:
        for d in s["draws"]:
            epochs = "-" if d["epochs"] is None else ", ".join(map(str, d["epochs"]))
            lines.append(f"| {s['seed']} | {d['draw']} | {d['macro_f1']:.3f} | {d['kappa']:.3f} | "
                         f"{d['subject_f1_mean']:.3f} ± {d['subject_f1_sd']:.3f} | {epochs} | {d['seconds']:.1f} |")
    return "\n".join(lines) + "\n"
