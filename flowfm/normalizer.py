"""Per-channel standardisation of the generator's data space (docs/design.md §3).

    x_n = (x - mean_c) / std_c,   x = x_n * std_c + mean_c        mean, std (C,) from the training windows
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ChannelNormalizer(nn.Module):
    """Buffers ``mean`` and ``std`` of shape (C,); saved with the model's weights."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @torch.no_grad()
    def fit(self, x, chunk: int = 4096, min_std: float = 1e-3) -> "ChannelNormalizer":
        """Set mean/std from windows x (N, C, L) (numpy, memmap or tensor), in float64 chunk by chunk."""
        n, c = x.shape[0], x.shape[1]
        if c != self.mean.numel():
            raise ValueError(f"normaliser has {self.mean.numel()} channels, data has {c}")
        total, sq, count = np.zeros(c), np.zeros(c), 0
        for start in range(0, n, chunk):
            block = np.asarray(x[start:start + chunk], dtype=np.float64)
            total += block.sum(axis=(0, 2))
            count += block.shape[0] * block.shape[2]
        mean = total / count
        for start in range(0, n, chunk):
            block = np.asarray(x[start:start + chunk], dtype=np.float64)
            sq += ((block - mean[None, :, None]) ** 2).sum(axis=(0, 2))
        std = np.maximum(np.sqrt(sq / count), min_std)
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(std))
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)[:, None]) / self.std.to(x.dtype)[:, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.dtype)[:, None] + self.mean.to(x.dtype)[:, None]
