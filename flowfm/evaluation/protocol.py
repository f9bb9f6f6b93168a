"""The subject-wise evaluation protocol in every mode, over seeds (docs/design.md §5).

Modes (``mode=``):

    linear    frozen z -> standardise -> logistic regression (:func:`~flowfm.evaluation.probe.linear_probe`,
              unchanged: it trains on all labelled training windows, no validation needed)
    mlp       frozen z (encoded once) -> :class:`~flowfm.evaluation.heads.MLPHead`, early stopping
    finetune  a fresh copy of the pretrained ``model.encoder`` + MLPHead, all weights trained on raw windows in g
              (what ``model.encode`` computes for every method of the library), early stopping
    scratch   as finetune, from the same encoder architecture at a random init (supervised from scratch)

Frozen-feature modes (linear, mlp) read the representation through ``readout=``
(:data:`flowfm.evaluation.features.READOUTS`): ``"z"`` (the encoder's final pooled output, the default) or
``"stages"`` (the pooled outputs of every encoder stage, concatenated). finetune / scratch train the encoder on z
and accept ``"z"`` only.

Protocol, identical for every model so that differences are paired: for evaluation seed ``s``, fold ``f`` and
label-subject draw ``d`` the labelled training subjects are ``label_subject_draw(pid, train_idx, k,
seed=s * 100003 + f * 1009 + d)`` (the draws of ``linear_probe``), validation subjects are carved from them with a
generator seeded by the same number (:func:`~flowfm.evaluation.validation.carve_validation`; no validation, i.e.
a fixed ``max_epochs`` budget, when only one labelled subject is available), and head init / shuffling / scratch
init use torch seeds derived from it. Every split is checked by
:func:`~flowfm.evaluation.validation.check_split` before anything is fit. Predictions of all folds are pooled per
draw into macro-F1 / kappa (every labelled window predicted once per draw) plus per-subject mean +- SD.

Report (JSON-serialisable dict)::

    {"model", "data", "mode", "readout", "folds", "loso", "label_subjects", "draws", "seeds": [...],
     "subjects": [evaluated subject ids as text],
     "fit_config": {...}, "validation": str,
     "per_seed": [{"seed", "seconds", "macro_f1", "kappa", "subject_f1_mean",
        "draws": [{"draw", "macro_f1", "kappa", "subject_f1_mean", "subject_f1_sd", "subject_kappa_mean",
                   "subject_kappa_sd", "epochs": [per fold] | None, "best_epochs": [...] | None,
                   "val_subjects": [...] | None, "seconds"}]}],
     "summary": {"macro_f1": summarize(per-seed means), "kappa": ..., "subject_f1_mean": ..., "epochs": ...},
     "macro_f1_mean", "macro_f1_sd", "kappa_mean", "kappa_sd", "encode_seconds", "seconds"}

SDs in ``summary`` are over seeds (each seed's value is the mean over its draws).
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch

from flowfm.evaluation import fit as _fit
from flowfm.evaluation.features import check_readout, encode_windows
from flowfm.evaluation.heads import EncoderClassifier, MLPHead, reinitialize
from flowfm.evaluation.metrics import classification_metrics, summarize
from flowfm.evaluation.probe import linear_probe
from flowfm.evaluation.splits import label_subject_draw, subject_folds
from flowfm.evaluation.validation import ProtocolSplit, carve_validation, check_split

MODES = ("linear", "mlp", "finetune", "scratch")
FROZEN_MODES = ("linear", "mlp")


class PerFold(list):
    """One model per fold, in the fold order of :func:`~flowfm.evaluation.splits.subject_folds`: inductive
    evaluation, where fold f's model was pretrained without fold f's test subjects (``flowfm compare
    --inductive``). Pass it (or a callable seed -> PerFold) wherever :func:`evaluate_encoder` takes a model."""


def _for_fold(model_or_folds, fold: int):
    """The model (or frozen features) that fold ``fold`` uses: its own under :class:`PerFold`, else the shared one."""
    return model_or_folds[fold] if isinstance(model_or_folds, PerFold) else model_or_folds


VALIDATION_RULE = ("validation subjects = max(1, round(val_fraction * n)) of the n labelled training subjects of "
                   "each fold (at most n - 1); a single labelled subject (k = 1) gets no validation: fixed "
                   "max_epochs budget, last-epoch weights")


def draw_seed(seed: int, fold: int, draw: int) -> int:
    """The seed of fold ``fold``, draw ``draw`` under evaluation seed ``seed`` (the one ``linear_probe`` uses)."""
    return seed * 100_003 + fold * 1_009 + draw


def protocol_splits(pid: np.ndarray, n_folds: int = 5, loso: bool = False, label_subjects: Optional[int] = None,
                    draws: int = 1, seed: int = 0, val_fraction: float = 0.2) -> list[ProtocolSplit]:
    """Every (fold, draw) split of one evaluation seed, each checked leak-free. ``draws`` is 1 with all labels."""
    pid = np.asarray(pid)
    folds = subject_folds(pid, n_folds, loso)
    draws = draws if label_subjects is not None else 1
    splits = []
    for draw in range(draws):
        for fold, (train_idx, test_idx) in enumerate(folds):
            s = draw_seed(seed, fold, draw)
            labelled = label_subject_draw(pid, train_idx, label_subjects, seed=s)
            fit_idx, val_idx = carve_validation(pid, labelled, val_fraction, seed=[s, 1])
            check_split(pid, fit_idx, val_idx, test_idx, where=f"seed {seed}, fold {fold}, draw {draw}")
            splits.append(ProtocolSplit(fold, draw, fit_idx, val_idx, test_idx))
    return splits


@torch.no_grad()
def _encode(encoder, x, batch_size: int, device) -> np.ndarray:
    """z (N, D) of windows x (N, C, L) through ``encoder`` in eval mode (the head's input statistics)."""
    encoder.eval()
    return np.concatenate([encoder(torch.as_tensor(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32),
                                                   device=device)).cpu().numpy()
                           for i in range(0, len(x), batch_size)])


def _fit_predict(mode: str, model, x: np.ndarray, feats: Optional[np.ndarray], y_int: np.ndarray,
                 split: ProtocolSplit, n_classes: int, config: _fit.FitConfig, seed: int, device) -> tuple:
    """Train one head (mlp) or encoder + head (finetune/scratch) on ``split``; predict its test windows."""
    model, feats = _for_fold(model, split.fold), _for_fold(feats, split.fold)
    inputs = feats if mode == "mlp" else x
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if mode == "mlp":
            net = MLPHead(feats.shape[1], n_classes, config.hidden, config.dropout).fit_input(feats[split.fit_idx])
            net = net.to(device)
            groups = [{"params": net.parameters(), "lr": config.lr}]
        else:
            encoder = copy.deepcopy(model.encoder).to(device)
            if mode == "scratch":
                reinitialize(encoder)
            _fit.recalibrate_batchnorm(encoder, x[split.fit_idx], config.batch_size)
            z_fit = _encode(encoder, x[split.fit_idx], config.eval_batch_size, device)
            head = MLPHead(z_fit.shape[1], n_classes, config.hidden, config.dropout).fit_input(z_fit).to(device)
            net = EncoderClassifier(encoder, head)
            enc_lr = config.lr * (1.0 if mode == "scratch" else config.encoder_lr_scale)
            groups = [{"params": encoder.parameters(), "lr": enc_lr}, {"params": head.parameters(), "lr": config.lr}]
        generator = torch.Generator().manual_seed(seed)
        result = _fit.fit_classifier(net, groups, inputs[split.fit_idx], y_int[split.fit_idx], inputs[split.val_idx],
                                     y_int[split.val_idx], n_classes, config, generator)
    return _fit.predict(net, inputs[split.test_idx], config.eval_batch_size, device), result


def _evaluate_seed(model, mode, x, y, pid, feats, seed, n_folds, loso, label_subjects, draws, config,
                   device, keep_predictions: bool = False) -> dict:
    t_seed = time.perf_counter()
    labels = np.unique(y)
    if mode == "linear":
        probe = linear_probe(feats, y, pid, n_folds=n_folds, loso=loso, label_subjects=label_subjects, draws=draws,
                             seed=seed, keep_predictions=keep_predictions)
        seconds = time.perf_counter() - t_seed
        per_draw = [dict(m, draw=d, epochs=None, best_epochs=None, val_subjects=None,
                         seconds=seconds / len(probe["per_draw"])) for d, m in enumerate(probe["per_draw"])]
    else:
        y_int = np.searchsorted(labels, y)
        splits = protocol_splits(pid, n_folds, loso, label_subjects, draws, seed, config.val_fraction)
        per_draw = []
        for d in sorted({s.draw for s in splits}):
            t_draw = time.perf_counter()
            y_pred = np.empty_like(y)
            epochs, best, n_val = [], [], []
            for split in (s for s in splits if s.draw == d):
                pred, result = _fit_predict(mode, model, x, feats, y_int, split, len(labels), config,
                                            draw_seed(seed, split.fold, d), device)
                y_pred[split.test_idx] = labels[pred]
                epochs.append(result.epochs)
                best.append(result.best_epoch)
                n_val.append(int(len(np.unique(pid[split.val_idx]))))
            metrics = classification_metrics(y, y_pred, pid, labels)
            per_draw.append(dict(metrics, draw=d, epochs=epochs, best_epochs=best, val_subjects=n_val,
                                 seconds=time.perf_counter() - t_draw))
            if keep_predictions:
                per_draw[-1]["y_pred"] = y_pred.tolist()
    return {"seed": seed, "seconds": time.perf_counter() - t_seed, "draws": per_draw,
            **{k: float(np.mean([m[k] for m in per_draw])) for k in ("macro_f1", "kappa", "subject_f1_mean")}}


def evaluate_encoder(model: Union[object, Callable[[int], object]], x, y, pid, mode: str = "linear", *,
                     seeds: Union[int, Iterable[int]] = 1, n_folds: int = 5, loso: bool = False,
                     label_subjects: Optional[int] = None, draws: int = 1,
                     config: Optional[_fit.FitConfig] = None, name: str = "model", data: Optional[str] = None,
                     device=None, progress: Optional[Callable[[str], None]] = None,
                     readout: str = "z", keep_predictions: bool = False) -> dict:
    """Evaluate one encoder subject-wise in ``mode`` over evaluation seeds; returns the report (module doc).

    model: anything with ``.encode(x)`` and ``.encoder`` (FlowFM, DiffusionFM, SSLWearables, e.g. from
        :func:`flowfm.checkpoint.load_model`), a :class:`PerFold` list of them (one per fold: inductive
        evaluation), or a callable ``seed -> model or PerFold`` (e.g. a random init per seed).
    x (N, C, L) windows in g, y (N,) labels, pid (N,) subject ids: labelled windows only.
    seeds: a count n (seeds 0..n-1) or explicit seeds. ``draws`` applies in the low-label regime only.
    readout: the frozen features of mode linear / mlp, ``"z"`` (N, D) or ``"stages"`` (N, sum of the encoder's
        stage channels); finetune / scratch accept ``"z"`` only.
    keep_predictions: store every test window's prediction (``y_pred``, in the order of x) in each draw.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is unknown; expected one of {MODES}")
    check_readout(readout)
    if readout != "z" and mode not in FROZEN_MODES:
        raise ValueError(f"readout={readout!r} applies to the frozen-feature modes {FROZEN_MODES} only; mode "
                         f"{mode!r} trains the encoder end to end on z (use readout='z')")
    x, y, pid = np.asarray(x), np.asarray(y), np.asarray(pid)
    if x.ndim != 3 or not (len(x) == len(y) == len(pid)):
        raise ValueError(f"x must be (N, C, L) with len(y) == len(pid) == N; got x {x.shape}, y {y.shape}, "
                         f"pid {pid.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("need at least 2 classes among the labelled windows")
    config = config or _fit.FitConfig()
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one evaluation seed")
    draws = draws if label_subjects is not None else 1
    n_splits = len(subject_folds(pid, n_folds, loso))
    t0 = time.perf_counter()
    per_seed, feats, encoded, encode_seconds = [], None, None, 0.0
    for seed in seeds:
        m = model(seed) if callable(model) and not isinstance(model, (torch.nn.Module, PerFold)) else model
        if isinstance(m, PerFold) and len(m) != n_splits:
            raise ValueError(f"{name}: {len(m)} per-fold models for {n_splits} folds")
        dev = torch.device(device) if device is not None else next(_for_fold(m, 0).parameters()).device
        if mode in FROZEN_MODES and m is not encoded:   # frozen features: once per distinct model
            t_enc = time.perf_counter()
            feats = (PerFold(encode_windows(mf, x, device=dev, readout=readout) for mf in m)
                     if isinstance(m, PerFold) else encode_windows(m, x, device=dev, readout=readout))
            encoded = m
            encode_seconds += time.perf_counter() - t_enc
            if progress:
                progress(f"{name}: encoded {len(x)} windows in {time.perf_counter() - t_enc:.1f} s")
        per_seed.append(_evaluate_seed(m, mode, x, y, pid, feats, seed, n_folds, loso, label_subjects, draws,
                                       config, dev, keep_predictions))
        if progress:
            progress(f"{name} {mode} seed {seed}: macro-F1 {per_seed[-1]['macro_f1']:.3f} "
                     f"({per_seed[-1]['seconds']:.1f} s)")
    epochs = [e for s in per_seed for d in s["draws"] for e in (d["epochs"] or [])]
    summary = {k: summarize([s[k] for s in per_seed]) for k in ("macro_f1", "kappa", "subject_f1_mean")}
    summary["epochs"] = summarize(epochs) if epochs else None
    return {"model": name, "data": data, "mode": mode, "readout": readout,
            "pretraining": "per fold, without the fold's test subjects (inductive)"
            if isinstance(m, PerFold) else "one model for all folds",
            "folds": n_splits, "loso": loso, "label_subjects": label_subjects,
            "draws": draws, "seeds": seeds, "subjects": [str(s) for s in np.unique(pid)],
            "fit_config": None if mode == "linear" else config.to_dict(),
            "validation": "none (logistic regression on all labelled training windows)" if mode == "linear"
            else VALIDATION_RULE,
            "per_seed": per_seed, "summary": summary,
            "macro_f1_mean": summary["macro_f1"]["mean"], "macro_f1_sd": summary["macro_f1"]["sd"],
            "kappa_mean": summary["kappa"]["mean"], "kappa_sd": summary["kappa"]["sd"],
            "encode_seconds": encode_seconds, "seconds": time.perf_counter() - t0}
