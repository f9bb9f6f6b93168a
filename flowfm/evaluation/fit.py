"""Training a classifier with subject-wise early stopping (the ``mlp`` / ``finetune`` / ``scratch`` modes).

:func:`fit_classifier` is the single entry point through which every window used for training (``x_fit``) or for
model selection (``x_val``) passes; the protocol hands it the windows of one :class:`ProtocolSplit` and never the
test windows (tests spy on it). The loop:

* class-weighted cross-entropy (:func:`~flowfm.evaluation.heads.class_weights` of the fit labels), AdamW over the
  given parameter groups, shuffled mini-batches (a trailing batch of one window is skipped: BatchNorm needs two);
* ``model.train()`` while fitting (BatchNorm uses batch statistics), ``model.eval()`` for validation and
  prediction. Before every evaluation the BatchNorm running statistics are recomputed from the fit windows
  (:func:`recalibrate_batchnorm`, a no-grad pass with a cumulative average): with ~10 steps per epoch the default
  momentum leaves running averages far from the current weights' statistics (a from-scratch encoder then predicts
  one class in eval mode). Only fit windows feed any statistic;
* after each epoch, macro-F1 on the validation windows; the best epoch's weights are kept and restored at the end,
  training stops after ``patience`` epochs without a strict improvement or at ``max_epochs``;
* without validation windows (a single labelled subject) it trains for exactly ``max_epochs`` and keeps the last
  weights.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from flowfm.evaluation.heads import class_weights


@dataclass
class FitConfig:
    """Hyper-parameters of the trained modes (the same for every model compared).

    ``lr`` is the head's learning rate; in ``finetune`` the pretrained encoder trains at ``lr *
    encoder_lr_scale`` (0.1: a lower rate keeps the pretrained features from being overwritten in the first
    epochs), in ``scratch`` the random-init encoder trains at ``lr`` (it has nothing to preserve)."""
    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    encoder_lr_scale: float = 0.1
    weight_decay: float = 1e-2
    hidden: int = 256
    dropout: float = 0.3
    val_fraction: float = 0.2
    eval_batch_size: int = 512

    def __post_init__(self):
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 2:
            raise ValueError(f"need max_epochs >= 1, patience >= 1, batch_size >= 2; got {self.max_epochs}, "
                             f"{self.patience}, {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    epochs: int                       # epochs run
    best_epoch: int                   # 1-based epoch whose weights were kept
    best_val_f1: Optional[float]      # None without validation windows
    history: list = field(default_factory=list)   # per epoch: {"epoch", "loss", "val_f1"}


def _tensor(a, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)


def _batchnorms(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x_fit, batch_size: int = 128) -> None:
    """Recompute every BatchNorm's running mean/var as the average over batches of x_fit (N, ...) in train mode
    (no gradients, weights untouched); leaves the model in eval mode. No-op without BatchNorm layers."""
    norms = _batchnorms(model)
    if not norms:
        return
    device = next(model.parameters()).device
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None           # cumulative moving average over the batches below
    model.train()
    try:
        for i in range(0, len(x_fit), batch_size):
            batch = x_fit[i:i + batch_size]
            if len(batch) >= 2:
                model(_tensor(batch, device) if not torch.is_tensor(batch) else batch)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()


@torch.no_grad()
def predict(model: nn.Module, x, batch_size: int = 512, device=None) -> np.ndarray:
    """Class indices (N,) of ``model`` on inputs x (N, ...) in eval mode (restores the previous mode)."""
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        out = [model(_tensor(x[i:i + batch_size], device)).argmax(dim=-1).cpu().numpy()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def fit_classifier(model: nn.Module, param_groups: list, x_fit, y_fit: np.ndarray, x_val, y_val: np.ndarray,
                   n_classes: int, config: FitConfig, generator: torch.Generator) -> FitResult:
    """Train ``model`` (inputs (N, ...) -> logits (N, n_classes)) in place; returns the epochs used.

    x_fit (N_fit, ...) / y_fit (N_fit,) ints: the training windows (or frozen features); x_val / y_val: the
    validation windows (N_val may be 0). ``param_groups``: AdamW groups (dicts with "params" and "lr").
    ``generator`` seeds the shuffling (dropout uses the global torch RNG, seeded by the caller).
    """
    if len(x_fit) < 2:
        raise ValueError(f"need at least 2 training windows, got {len(x_fit)}")
    device = next(model.parameters()).device
    y_fit_t = torch.as_tensor(np.asarray(y_fit, dtype=np.int64), device=device)
    x_fit_t = _tensor(x_fit, device)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y_fit, n_classes).to(device))
    optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
    has_val = len(x_val) > 0
    val_labels = np.unique(y_val) if has_val else None
    best_f1, best_epoch, best_state, wait, history = -1.0, 0, None, 0, []
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(len(x_fit_t), generator=generator).to(device)
        total, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(model(x_fit_t[idx]), y_fit_t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        recalibrate_batchnorm(model, x_fit_t, config.batch_size)
        record = {"epoch": epoch, "loss": total / max(seen, 1), "val_f1": None}
        if has_val:
            f1 = float(f1_score(y_val, predict(model, x_val, config.eval_batch_size), labels=val_labels,
                                average="macro", zero_division=0))
            record["val_f1"] = f1
            if f1 > best_f1:
                best_f1, best_epoch, wait = f1, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                wait += 1
        history.append(record)
        if has_val and wait >= config.patience:
            break
    if has_val:
        model.load_state_dict(best_state)
        return FitResult(epochs=epoch, best_epoch=best_epoch, best_val_f1=best_f1, history=history)
    return FitResult(epochs=epoch, best_epoch=epoch, best_val_f1=None, history=history)
