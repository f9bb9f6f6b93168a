"""The representation bank: the prior over z that unconditional sampling draws from.

A representation-conditioned generator samples p(x) = E_{z ~ p(z)} p(x | z) by first drawing a representation z
and then generating conditioned on it (as in representation-conditioned generation, RCG). FlowFM's p(z) is the
empirical distribution of the trained encoder over the training windows: after pretraining, the bank holds

    Z = [E(x_i)]_{i in I}   (K, D),   I a seeded draw of K = min(size, N) of the N training windows,

computed in eval mode with the final weights and stored with the model (``model.z_bank``, saved in the
checkpoint). ``fast_sample(model, n=...)`` then draws n rows of Z uniformly with replacement. Unlike the null
vector this needs no condition dropout; on HAPT its unconditional samples were as close to the data as those of a
dropout-trained null vector (equal feature Frechet distance, lower discriminative score;
docs/results.md "Condition dropout and unconditional sampling").
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_BANK_SIZE = 1024


def fill_representation_bank(model, x, size: int = DEFAULT_BANK_SIZE, seed: int = 0, batch_size: int = 256,
                             device=None) -> int:
    """Set ``model.z_bank`` to E(x_i) (K, D) for a seeded draw of K = min(size, N) windows of x (N, C, L) (numpy /
    memmap, in g); returns K. ``size = 0`` empties the bank. The model's weights and train/eval mode are kept."""
    if not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be an integer >= 0, got {size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else model.null_z.device
    k = min(int(size), len(x))
    if k == 0:
        model.set_z_bank(torch.zeros(0, model.z_dim))
        return 0
    from flowfm.evaluation.features import encode_windows  # here: flowfm.evaluation loads scikit-learn

    idx = np.sort(np.random.default_rng([seed, 0x62616E6B]).choice(len(x), size=k, replace=False))
    model.set_z_bank(torch.from_numpy(encode_windows(model, x[idx], batch_size=batch_size, device=device)))
    return k
