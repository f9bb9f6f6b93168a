"""Figures: real vs generated windows (matplotlib, Agg backend, written atomically as PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (parent folders created), close it, return the path."""
    import matplotlib.pyplot as plt

    from flowfm.data.atomic import atomic_open

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path


def plot_real_vs_generated(real: np.ndarray, generated: np.ndarray, path, titles: Optional[Sequence[str]] = None,
                           fs: float = 30.0) -> Path:
    """real, generated (K, C, L) in g: K rows, left column real, right column the window generated from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowfm.data.atomic import atomic_open

    k = real.shape[0]
    fig, axes = plt.subplots(k, 2, figsize=(10, 1.8 * k), sharex=True, squeeze=False)
    t = np.arange(real.shape[-1]) / fs
    axis_names = ["x", "y", "z"] + [f"c{i}" for i in range(3, real.shape[1])]
    for row in range(k):
        lo = min(real[row].min(), generated[row].min()) - 0.1
        hi = max(real[row].max(), generated[row].max()) + 0.1
        for col, (data, kind) in enumerate(((real, "real"), (generated, "generated"))):
            ax = axes[row, col]
            for c in range(data.shape[1]):
                ax.plot(t, data[row, c], lw=0.8, label=axis_names[c])
            ax.set_ylim(lo, hi)
            title = f"{kind}" + (f": {titles[row]}" if titles is not None else "")
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[row, 0].set_ylabel("g", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=3)
    for ax in axes[-1]:
        ax.set_xlabel("s", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return path
