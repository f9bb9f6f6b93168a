"""Frozen-encoder features: z = E(x) for a whole dataset, in eval mode, batch by batch."""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def encode_windows(model, x, batch_size: int = 256, device=None) -> np.ndarray:
    """x (N, C, L) numpy/memmap in g -> features (N, D) float32 from ``model.encode`` (BatchNorm in eval mode)."""
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        out = [model.encode(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))
                            .to(device)).float().cpu().numpy() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(out, axis=0)
