"""SSL-Wearables' pretext transforms and augmentations (Yuan et al. 2024), batched in torch.

All functions take windows x (B, C, L) in g and draw from an optional ``torch.Generator`` (on x's device), so a
training run is reproducible. Pretext tasks (binary labels, 1 = transformed), each applied independently with
probability p, in this order (as in SSL-Wearables' ``generate_labels``):

``aot``        arrow of time: x(l) -> x(L-1-l)
``permute``    the window is cut into n (default 4) segments of random lengths >= m and the segments are
               concatenated in a random non-identity order (the multiset of segments is unchanged)
``time_warp``  a smooth random time warp per axis: speed 1 + sigma * (knots-point linear curve), positions
               cumsum(speed) rescaled to [0, L-1] (so both endpoints are kept), linear interpolation
               (:func:`flowfm.views.time_warp` on each channel separately)

Augmentation, applied *before* the pretext transforms: a random permutation of the 3 axes of each xyz triple
(6 permutations, identity included) and a random 3D rotation (uniform axis, angle U(-pi, pi)). SSL-Wearables draws
one axis order and one rotation per subject's block of windows (a batch holds a few subjects); ``augment_scope=
"batch"`` (default) draws one per batch, ``"window"`` one per window. The scope matters with BatchNorm: with
per-window rotations the direction of gravity (a 1 g offset) differs within a batch, and on synthetic data a
small encoder then learned none of the tasks in 400 steps, while with one draw per batch it learned them (AoT
accuracy > 0.9 after about 200 steps). SSL-Wearables applies its augmentation after the pretext transforms; the
two orders differ only through the per-axis time warp.
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch

from flowfm import rng
from flowfm.views import random_rotation, time_warp

TASKS = ("aot", "permute", "time_warp")
AUGMENT_SCOPES = ("batch", "window")


def _rand(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    return rng.rand(shape, generator, device=device)


def reverse_time(x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x(l) -> x(L-1-l) where ``mask`` (B,) is True (all samples when None)."""
    flipped = x.flip(-1)
    return flipped if mask is None else torch.where(mask[:, None, None], flipped, x)


def _permutations(n: int, device) -> torch.Tensor:
    """(n!, n) all permutations of range(n) in lexicographic order: row 0 is the identity."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long, device=device)


def random_segments(batch: int, length: int, n_segments: int = 4, min_segment: int = 10,
                    generator: Optional[torch.Generator] = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cuts and orders for :func:`permute_segments`: segment ``lengths`` (B, n), each >= m with
    m = min(min_segment, L // (2 n)) (at least 1), summing to L (the extra L - n m is split at sorted uniform
    integer cut points); ``perm`` (B, n), uniform over the n! - 1 non-identity orders."""
    if not 2 <= n_segments <= 6:
        raise ValueError(f"n_segments must be in [2, 6], got {n_segments}")
    m = max(1, min(min_segment, length // (2 * n_segments)))
    if length < n_segments * m:
        raise ValueError(f"a window of {length} samples cannot be cut into {n_segments} segments")
    extra = length - n_segments * m
    cuts = rng.randint(0, extra + 1, (batch, n_segments - 1), generator, device=device).sort(1).values
    bounds = torch.cat([torch.zeros(batch, 1, dtype=torch.long, device=device), cuts,
                        torch.full((batch, 1), extra, dtype=torch.long, device=device)], dim=1)
    lengths = m + bounds.diff(dim=1)
    table = _permutations(n_segments, device)
    idx = rng.randint(1, table.shape[0], (batch,), generator, device=device)
    return lengths, table[idx]


def permute_segments(x: torch.Tensor, lengths: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Concatenate the segments of x (B, C, L) (consecutive, of ``lengths`` (B, n)) in the order ``perm``
    (B, n): output segment j is input segment perm[:, j]."""
    b, c, length = x.shape
    if lengths.shape != perm.shape or lengths.shape[0] != b or bool((lengths.sum(1) != length).any()):
        raise ValueError("lengths and perm must be (B, n) with every row of lengths summing to L")
    start = lengths.cumsum(1) - lengths                       # (B, n) input segment starts
    new_len = lengths.gather(1, perm)
    new_start = new_len.cumsum(1) - new_len                   # (B, n) output segment starts
    pos = torch.arange(length, device=x.device)
    seg = (pos[None, None, :] >= new_start[:, :, None]).sum(1) - 1   # (B, L) output segment of each position
    src = start.gather(1, perm.gather(1, seg)) + pos[None, :] - new_start.gather(1, seg)
    return x.gather(2, src[:, None, :].expand(-1, c, -1))


def warp_per_axis(x: torch.Tensor, sigma: float = 0.2, knots: int = 4,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """An independent smooth time warp of every channel of x (B, C, L); endpoints are kept."""
    b, c, length = x.shape
    return time_warp(x.reshape(b * c, 1, length), sigma, knots, generator).reshape(b, c, length)


def swap_axes(x: torch.Tensor, generator: Optional[torch.Generator] = None, per_window: bool = True) -> torch.Tensor:
    """A random permutation (uniform over all 6) of the axes of each xyz triple of channels, drawn per window
    (``per_window``) or once for the whole batch."""
    b, c, length = x.shape
    if c % 3:
        return x
    triples = c // 3
    table = _permutations(3, x.device)
    draws = rng.randint(0, 6, (b if per_window else 1, triples), generator, device=x.device, shared=not per_window)
    order = table[draws].expand(b, -1, -1)   # (B, triples, 3)
    index = (order + 3 * torch.arange(triples, device=x.device)[None, :, None]).reshape(b, c)
    return x.gather(1, index[:, :, None].expand(-1, -1, length))


def rotate_3d(x: torch.Tensor, generator: Optional[torch.Generator] = None, per_window: bool = True) -> torch.Tensor:
    """A random rotation of each xyz triple of channels (uniform random axis, angle U(-pi, pi)), drawn per
    window (``per_window``) or once for the whole batch."""
    b, c, length = x.shape
    if c % 3:
        return x
    triples = c // 3
    rot = random_rotation((b if per_window else 1) * triples, 180.0, generator, x.device,
                          shared=not per_window).to(x.dtype)
    rot = rot.reshape(-1, triples, 3, 3).expand(b, -1, -1, -1).reshape(b * triples, 3, 3)
    return (rot @ x.reshape(b * triples, 3, length)).reshape(b, c, length)


def pretext_batch(x: torch.Tensor, tasks=TASKS, p: float = 0.5, n_segments: int = 4, min_segment: int = 10,
                  warp_sigma: float = 0.2, warp_knots: int = 4, axis_swap: bool = True, rotation: bool = True,
                  augment_scope: str = "batch",
                  generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Augment (axis swap, 3D rotation; one draw per batch or per window, ``augment_scope``) and apply the
    pretext ``tasks`` in the order aot, permute, time_warp, each with probability ``p``. Returns
    (x' (B, C, L), {task: labels (B,) int64}). Draws from ``generator``: axis orders, rotations, then per task its
    mask followed by its parameters."""
    if augment_scope not in AUGMENT_SCOPES:
        raise ValueError(f"augment_scope={augment_scope!r}; expected one of {AUGMENT_SCOPES}")
    per_window = augment_scope == "window"
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tuple(tasks)}")
    b, device = x.shape[0], x.device
    if axis_swap:
        x = swap_axes(x, generator, per_window)
    if rotation:
        x = rotate_3d(x, generator, per_window)
    labels: dict[str, torch.Tensor] = {}
    for task in TASKS:
        if task not in tasks:
            continue
        mask = _rand(b, generator, device) < p
        if task == "aot":
            x = reverse_time(x, mask)
        elif task == "permute":
            lengths, perm = random_segments(b, x.shape[-1], n_segments, min_segment, generator, device)
            x = torch.where(mask[:, None, None], permute_segments(x, lengths, perm), x)
        else:
            x = torch.where(mask[:, None, None], warp_per_axis(x, warp_sigma, warp_knots, generator), x)
        labels[task] = mask.long()
    return x, labels


__all__ = ["TASKS", "AUGMENT_SCOPES", "reverse_time", "random_segments", "permute_segments", "warp_per_axis",
           "swap_axes", "rotate_3d", "pretext_batch"]
