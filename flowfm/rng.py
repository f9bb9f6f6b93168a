"""Random draws of the training objectives, shardable across data-parallel ranks.

Every objective (:meth:`FlowFM.loss`, :meth:`DiffusionFM.loss`, :meth:`SSLWearables.loss`) draws its randomness
(noise, times, condition-dropout masks, encoder-view and pretext augmentations) through :func:`randn`,
:func:`rand` and :func:`randint` below. With a plain ``torch.Generator`` (or None) they are exactly the torch
calls, so a single process draws what it always drew.

Data-parallel training splits each global batch of B windows into contiguous row blocks, rank r holding rows
[lo, hi). For the distributed run to equal the single-process run, rank r's draws must be the rows [lo, hi) of
the draws one process makes for the whole batch. The trainer therefore passes a :class:`ShardedGenerator`: every
rank holds the same generator state and, for each per-sample draw of local shape (b * k, ...) (k rows per window,
e.g. k = C / 3 rotations for C channels), draws the *global* shape (B * k, ...) and keeps rows [lo * k, hi * k).
Draws that are not per sample (one rotation for the whole batch) pass ``shared=True`` and are drawn unchanged.
Afterwards every rank's generator is in the state the single process's is in, so checkpoints do not depend on the
number of ranks. Cost: each rank draws B instead of b windows' worth of random numbers (the networks, not the
draws, dominate a step).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

Shape = Union[int, Sequence[int]]


class ShardedGenerator:
    """A generator shared by all ranks plus this rank's rows [lo, hi) of a global batch of ``total`` windows."""

    def __init__(self, generator: torch.Generator, lo: int, hi: int, total: int):
        if not 0 <= lo < hi <= total:
            raise ValueError(f"need 0 <= lo < hi <= total, got lo={lo}, hi={hi}, total={total}")
        self.generator, self.lo, self.hi, self.total = generator, lo, hi, total

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def __repr__(self) -> str:
        return f"ShardedGenerator(rows {self.lo}:{self.hi} of {self.total})"


GeneratorLike = Optional[Union[torch.Generator, ShardedGenerator]]


def _draw(fn, shape: Shape, generator: GeneratorLike, shared: bool, **kwargs) -> torch.Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not isinstance(generator, ShardedGenerator):
        return fn(shape, generator=generator, **kwargs)
    g = generator
    if shared:
        return fn(shape, generator=g.generator, **kwargs)
    local = g.hi - g.lo
    if not shape or shape[0] % local:
        raise ValueError(f"a per-sample draw needs a leading dimension that is a multiple of the local batch "
                         f"{local}, got shape {shape} (pass shared=True for a draw made once per batch)")
    k = shape[0] // local
    full = fn((g.total * k, *shape[1:]), generator=g.generator, **kwargs)
    return full[g.lo * k:g.hi * k]


def randn(shape: Shape, generator: GeneratorLike = None, *, shared: bool = False, **kwargs) -> torch.Tensor:
    """``torch.randn(shape, generator=..., **kwargs)``, rows of the global draw under a :class:`ShardedGenerator`."""
    return _draw(torch.randn, shape, generator, shared, **kwargs)


def rand(shape: Shape, generator: GeneratorLike = None, *, shared: bool = False, **kwargs) -> torch.Tensor:
    """``torch.rand`` like :func:`randn`."""
    return _draw(torch.rand, shape, generator, shared, **kwargs)


def randint(low: int, high: int, shape: Shape, generator: GeneratorLike = None, *, shared: bool = False,
            **kwargs) -> torch.Tensor:
    """``torch.randint(low, high, shape, ...)`` like :func:`randn`."""
    return _draw(lambda s, **kw: torch.randint(low, high, s, **kw), shape, generator, shared, **kwargs)


__all__ = ["ShardedGenerator", "randn", "rand", "randint"]
