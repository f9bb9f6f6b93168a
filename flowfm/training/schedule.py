"""Learning-rate schedule: linear warm-up then cosine decay, as a LambdaLR multiplier of the base rate.

    m(s) = (s + 1) / W                                          for s < W
    m(s) = r + (1 - r) * (1 + cos(pi * (s - W) / (S - W))) / 2   for W <= s <= S     (r = min_lr_ratio)
"""
from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  min_lr_ratio: float = 0.05) -> torch.optim.lr_scheduler.LambdaLR:
    total_steps, warmup_steps = max(1, total_steps), max(0, min(warmup_steps, total_steps - 1))

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
