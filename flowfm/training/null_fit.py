"""Fit the null vector of a generator trained without condition dropout (``p_uncond = 0``), after pretraining.

Condition dropout (docs/design.md §3) trains the null vector n alongside the network, at the price of the network
learning
to do without z on a fraction p of the rows; on HAPT that cost the encoder (docs/results.md "Design variants"). With
p = 0 the network never sees n, so unconditional sampling and guidance have no null vector. This fit supplies one
afterwards, with every network weight and buffer frozen (the encoder and its representations are untouched):

    n* = argmin_n  E_{x, noise, t} L(x; z~ = n)

where L is the model's own per-batch training loss with every condition dropped (flow matching: || v(x_t, t, n)
- u ||^2; diffusion: || eps_hat(x_k, k / T, n) - eps ||^2), i.e. the single condition whose field best
approximates the unconditional one. n starts at the mean representation of the fitting windows
(n0 = mean_i E(x_i), i over up to ``init_windows`` windows) and takes ``steps`` Adam steps of ``batch_size``
windows at rate ``lr``; batches and random draws come from ``seed``, so a fit is reproducible.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from flowfm.null_condition import null_fit_needed  # noqa: F401  (re-exported)
from flowfm.profiling import nvtx_range


def _rows(x, idx: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x[np.sort(idx)], dtype=np.float32)).to(device)


def fit_null_vector(model, x, *, steps: int = 100, batch_size: int = 64, lr: float = 0.05, seed: int = 0,
                    init_windows: int = 1024, device=None, progress: bool = False) -> dict:
    """Fit ``model.null_z`` (D,) on windows x (N, C, L) (numpy / memmap, in g) by the loss above; nothing else in
    the model changes. Records ``{"steps", "lr", "batch_size", "seed", "loss_start", "loss_end", "seconds"}`` in
    ``model.config.extra["null_fit"]`` (saved with the model; :func:`flowfm.fast_sample` checks it) and returns it.
    ``loss_start`` / ``loss_end`` are the mean loss over the first / last ``min(10, steps)`` steps. ``progress``
    shows a tqdm bar with the running loss (the fit takes about as long as a training epoch or more)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if batch_size < 1 or init_windows < 1:
        raise ValueError(f"batch_size and init_windows must be >= 1, got {batch_size}, {init_windows}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    n = len(x)
    if n < 1:
        raise ValueError("fit_null_vector needs at least one window, got none")
    from flowfm.evaluation.features import encode_windows  # here: flowfm.evaluation loads scikit-learn

    device = torch.device(device) if device is not None else model.null_z.device
    rng = np.random.default_rng([seed, 0x6E756C6C])
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    model.to(device).eval()  # BatchNorm reads its running statistics and updates none
    t0 = time.perf_counter()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad(), nvtx_range("flowfm/null_fit_init"):
            first = np.sort(rng.choice(n, size=min(n, init_windows), replace=False))
            model.null_z.copy_(torch.from_numpy(encode_windows(model, x[first], device=device).mean(0)))
        model.null_z.requires_grad_(True)
        optimizer = torch.optim.Adam([model.null_z], lr=lr)
        losses = []
        from tqdm.auto import tqdm

        bar = tqdm(range(steps), desc="null-vector fit", unit="step", disable=not progress, leave=False)
        for _ in bar:
            batch = _rows(x, rng.choice(n, size=min(n, batch_size), replace=False), device)
            with nvtx_range("flowfm/null_fit_step"):
                drop = torch.ones(batch.shape[0], dtype=torch.bool, device=device)
                loss = model.loss(batch, drop=drop, view=batch, generator=generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        bar.close()
        if not np.isfinite(losses).all():
            raise FloatingPointError(f"the null-vector fit diverged (loss {losses[-1]}); try a smaller lr than {lr}")
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(requires_grad[name])
        model.train(was_training)
    k = min(10, steps)
    record = {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
              "loss_start": float(np.mean(losses[:k])), "loss_end": float(np.mean(losses[-k:])),
              "seconds": time.perf_counter() - t0}
    model.config.extra["null_fit"] = record
    return record


def fit_null_if_needed(model, x, steps: Optional[int], **kwargs) -> Optional[dict]:
    """:func:`fit_null_vector` when the model needs it (:func:`null_fit_needed`) and ``steps`` is a positive
    count; None otherwise."""
    if not steps or not null_fit_needed(model):
        return None
    return fit_null_vector(model, x, steps=steps, **kwargs)
