"""What ``flowfm evaluate`` writes beside its report, for a paper or a check:

    REP.json              the report (every seed and draw: macro-F1, kappa, per-class scores, confusion matrix),
                          with provenance: package version, git commit when run from a checkout, SHA-256 of the
                          evaluated arrays (x, y, pid), the command line
    REP.md                the same as tables (per-class precision / recall / F1, confusion matrix summed over
                          seeds and draws)
    REP_confusion.png     that confusion matrix, row-normalised (recall on the diagonal)
    REP_predictions.csv   every test window's prediction: seed, draw, window index, subject, true and predicted

``REP`` is ``--out`` without its suffix, so ``--out rep.md`` and ``--out rep.json`` name the same four files, and
none of them overwrites another (or an existing file unless asked).
"""
from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["report_paths", "summed_confusion", "provenance", "per_class_markdown", "write_predictions_csv",
           "plot_confusion"]


def report_paths(out) -> dict[str, Path]:
    out = Path(out)
    base = out.with_suffix("") if out.suffix in (".json", ".md") else out
    return {"json": base.with_suffix(".json"), "md": base.with_suffix(".md"),
            "png": base.parent / f"{base.name}_confusion.png", "csv": base.parent / f"{base.name}_predictions.csv"}


def summed_confusion(report: dict) -> tuple[list[str], np.ndarray]:
    """(labels, K x K counts) summed over every seed and draw of ``report`` (rows true, columns predicted)."""
    draws = [d for s in report["per_seed"] for d in s["draws"]]
    labels = draws[0]["confusion"]["labels"]
    return labels, np.sum([np.asarray(d["confusion"]["matrix"]) for d in draws], axis=0)


def _git_commit() -> Optional[str]:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def provenance(arrays: Sequence[np.ndarray], argv: Optional[Sequence[str]] = None) -> dict:
    """Package version, git commit (None outside a checkout), SHA-256 over the arrays' shapes, dtypes and bytes,
    and the command line."""
    import flowfm

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else "\x00".join(map(str, a.ravel())).encode())
    return {"flowfm_version": flowfm.__version__, "git_commit": _git_commit(), "data_sha256": h.hexdigest(),
            "command": " ".join(["flowfm", *(argv if argv is not None else sys.argv[1:])])}


def per_class_markdown(report: dict) -> str:
    """Per-class precision / recall / F1 (mean over seeds and draws) and the summed confusion matrix."""
    draws = [d for s in report["per_seed"] for d in s["draws"]]
    labels, cm = summed_confusion(report)
    lines = ["", "Per class (mean over seeds and draws):", "", "| class | precision | recall | F1 | windows |",
             "|---|---|---|---|---|"]
    for k in labels:
        vals = [d["per_class"][k] for d in draws]
        lines.append(f"| {k} | {np.mean([v['precision'] for v in vals]):.3f} | "
                     f"{np.mean([v['recall'] for v in vals]):.3f} | {np.mean([v['f1'] for v in vals]):.3f} | "
                     f"{vals[0]['support']} |")
    lines += ["", f"Confusion matrix (rows true, columns predicted; summed over {len(draws)} seed-draw(s)):", "",
              "| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(str(int(v)) for v in row) + " |" for k, row in zip(labels, cm)]
    return "\n".join(lines) + "\n"


def write_predictions_csv(report: dict, y: np.ndarray, pid: np.ndarray) -> str:
    """CSV text of every stored test-window prediction (``evaluate_encoder(..., keep_predictions=True)``)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["seed", "draw", "window", "pid", "true", "predicted"])
    for s in report["per_seed"]:
        for d in s["draws"]:
            for i, pred in enumerate(d.get("y_pred", [])):
                w.writerow([s["seed"], d["draw"], i, pid[i], y[i], pred])
    return buf.getvalue()


def plot_confusion(report: dict, path: Path) -> Path:
    """Row-normalised confusion matrix PNG (recall on the diagonal), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowfm.data.atomic import atomic_open

    labels, cm = summed_confusion(report)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels), 1.0 + 0.6 * len(labels)))
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"{report['model']} ({report['mode']})", fontsize=9)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path
