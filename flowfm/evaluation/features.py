"""Frozen-encoder features for a whole dataset, in eval mode, batch by batch.

Readouts (``readout=``):

    z        ``model.encode(x)``: the encoder's final global-average-pooled output, (N, D)
    stages   ``model.encoder.pooled_stages(x)``: the global-average-pooled output of every encoder stage,
             concatenated in stage order, (N, sum(model.encoder.stage_dims)); its last D columns are z
"""
from __future__ import annotations

import numpy as np
import torch

from flowfm.encoder import READOUTS, check_window_batch

__all__ = ["READOUTS", "check_readout", "readout_features", "encode_windows"]


def check_readout(readout: str) -> None:
    """Raise a ValueError naming ``readout`` and the accepted ones unless it is one of :data:`READOUTS`."""
    if readout not in READOUTS:
        raise ValueError(f"readout={readout!r} is unknown; expected one of {READOUTS}")


def readout_features(model, x: torch.Tensor, readout: str = "z") -> torch.Tensor:
    """x (B, C, L) in g -> features (B, F): z (B, D) from ``model.encode``, or the pooled stages
    (B, sum(stage_dims)) from ``model.encoder`` after the same input check ``encode`` does (``encode`` of FlowFM,
    DiffusionFM and SSLWearables is that check followed by ``self.encoder(x)``; no normalisation)."""
    check_readout(readout)
    if readout == "z":
        return model.encode(x)
    check_window_batch(x, model.config.in_channels)
    return model.encoder.pooled_stages(x)


@torch.no_grad()
def encode_windows(model, x, batch_size: int = 256, device=None, readout: str = "z") -> np.ndarray:
    """x (N, C, L) numpy/memmap in g -> features (N, F) float32 of ``readout`` (module doc; BatchNorm in eval mode):
    F = D for ``"z"``, sum(model.encoder.stage_dims) for ``"stages"``."""
    check_readout(readout)
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)).to(device)
            out.append(readout_features(model, batch, readout).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out, axis=0)
