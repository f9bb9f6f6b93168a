"""What a frozen representation keeps: per-class F1 of the linear probe and how well z predicts posture and motion.

For each model (checkpoint folders, one per seed, or ``random`` for the preset's random-init encoder) on the
labelled windows of one subject split, with 5 subject-wise folds (GroupKFold, the protocol's folds):

* **per-class F1** of the standardised-z logistic regression (pooled over folds);
* **posture R²**: ridge regression (strength chosen by subject-wise CV in the training subjects) from standardised z to the window's mean acceleration per axis
  (the gravity direction in g; what separates sitting, standing and lying for a waist-worn phone), out of fold;
* **motion R²**: the same for log of the window's mean per-axis standard deviation (movement intensity).

A pretext task whose augmentations rotate the window (SSL-Wearables' random 3-D rotation and axis swap) makes z
invariant to the gravity direction by construction; this measures how much of it is left.

    python -m bench.representation_probe --split report --out bench/results/evidence/repr_probe_report \
        --model "random init=random" --model "SSL-Wearables=/runs/x/pretrain/ssl-wearables/seed_{seed}/model"
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _features(model, x) -> np.ndarray:
    return model.embed(x).numpy().astype(np.float64)


def probe(z: np.ndarray, x: np.ndarray, y: np.ndarray, pid: np.ndarray, folds: int = 5) -> dict:
    """Per-class F1 (pooled out-of-fold predictions), posture R² and motion R² of representations z (N, D) of
    windows x (N, C, L) with labels y and subjects pid."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import f1_score, r2_score
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    posture = x.mean(axis=2)                                  # (N, C) mean acceleration per axis, g
    motion = np.log(x.std(axis=2) + 1e-3)                     # (N, C)
    pred = np.empty_like(y)
    post_hat, mot_hat = np.empty_like(posture), np.empty_like(motion)
    for train, test in GroupKFold(folds).split(z, y, pid):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        pred[test] = clf.fit(z[train], y[train]).predict(z[test])
        for target, out in ((posture, post_hat), (motion, mot_hat)):
            # ridge strength chosen by subject-wise CV inside the training subjects (unseen-subject error)
            reg = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": np.logspace(-1, 5, 7)},
                               cv=GroupKFold(4), scoring="r2")
            out[test] = reg.fit(z[train], target[train], groups=pid[train]).predict(z[test])
    classes = np.unique(y)
    per_class = f1_score(y, pred, labels=classes, average=None)
    return {"macro_f1": float(f1_score(y, pred, average="macro")),
            "per_class_f1": {str(c): float(f) for c, f in zip(classes, per_class)},
            "posture_r2": float(r2_score(posture, post_hat)), "motion_r2": float(r2_score(motion, mot_hat))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True,
                   help="NAME=PATH with {seed} for the seed, or NAME=random (repeatable)")
    p.add_argument("--split", default="report", choices=["design", "report"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--preset", default="small")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)

    import torch

    from flowfm.checkpoint import load_model
    from flowfm.data import load_hapt
    from flowfm.evaluation.sources import random_init_model
    from flowfm.evaluation.subject_split import subject_mask

    torch.set_num_threads(args.threads)
    ds = load_hapt()
    lab = ds.labelled()
    lab = lab.subset(subject_mask(lab.pid, split=args.split))
    x, y, pid = np.asarray(lab.x, dtype=np.float32), np.asarray(lab.y), np.asarray(lab.pid)
    names = getattr(ds, "label_names", None) or {}
    results = {}
    for spec in args.model:
        name, _, source = spec.partition("=")
        per_seed = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            model = (random_init_model(args.preset, x.shape[1], x.shape[2], seed) if source == "random"
                     else load_model(source.format(seed=seed)))
            r = probe(_features(model, torch.from_numpy(x)), x, y, pid)
            r.update(seed=seed, seconds=time.perf_counter() - t0)
            per_seed.append(r)
            print(f"{name} seed {seed}: macro-F1 {r['macro_f1']:.3f} posture R2 {r['posture_r2']:.3f} "
                  f"motion R2 {r['motion_r2']:.3f}", flush=True)
        results[name] = {"source": source, "per_seed": per_seed}
    doc = {"suite": "representation_probe", "split": args.split, "subjects": sorted(set(pid.tolist())),
           "windows": int(len(y)), "label_names": {str(k): v for k, v in names.items()}, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


def _ms(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def markdown(doc: dict) -> str:
    classes = list(next(iter(doc["results"].values()))["per_seed"][0]["per_class_f1"])
    names = [doc["label_names"].get(c, c) for c in classes]
    head = ["model", "macro-F1", "posture R²", "motion R²", *names]
    lines = [f"Linear probe on the {doc['split']} subjects ({doc['windows']} windows, 5 subject-wise folds), mean ± "
             f"SD over seeds; posture / motion R²: ridge from standardised z to the per-axis window mean / log SD.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in doc["results"].items():
        s = r["per_seed"]
        cells = [name, _ms([v["macro_f1"] for v in s]), _ms([v["posture_r2"] for v in s]),
                 _ms([v["motion_r2"] for v in s]), *[_ms([v["per_class_f1"][c] for v in s]) for c in classes]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
