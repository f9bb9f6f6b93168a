"""Data-parallel pretraining: process group, rank helpers, batch sharding, synced BatchNorm and gradients.

Launch with ``torchrun --nproc_per_node=N -m flowfm pretrain ...``: :func:`setup` reads torchrun's WORLD_SIZE /
RANK / LOCAL_RANK and joins the process group (NCCL for CUDA, gloo for the CPU); :func:`pretrain` then runs
data-parallel whenever a process group of more than one rank is initialised. The design goal is that N ranks
with global batch B give the single process's run with batch B, up to floating-point summation order:

* **Data.** ``--batch-size`` is the global batch B. Each epoch's order and its global batches are the single
  process's; rank r takes the contiguous rows [lo_r, hi_r) = [r B / N, (r + 1) B / N) of each (sorted) global
  batch (:func:`shard_rows`), so the ranks' shares are disjoint and cover the batch.
* **Randomness.** All ranks hold the same seeded generator and draw the *global* batch's randomness, keeping
  their rows (:class:`flowfm.rng.ShardedGenerator`): rank r's noise, times, dropout masks and augmentations are
  exactly the single process's for its rows, and the generator state (checkpointed) is the single process's.
* **BatchNorm.** The encoder's BatchNorm must normalise with the statistics of the whole global batch, as in one
  process. ``torch.nn.SyncBatchNorm`` refuses CPU tensors (torch 2.13: "expected input tensor to be on GPU"), so
  :class:`GlobalBatchNorm1d` does it on every device with differentiable all-reduces: the mean from the all-reduced
  per-channel sums, then the biased variance from the all-reduced sums of squared deviations (two passes, as
  accurate as the local kernel), running statistics updated with the unbiased global variance, like BatchNorm.
  Its backward all-reduces the gradients of the statistics, so cross-rank terms are exact.
* **Gradients.** The models expose ``loss()``, not ``forward()``, so instead of wrapping them in
  ``DistributedDataParallel`` the trainer all-reduces explicitly (:func:`all_reduce_gradients`): rank r
  back-propagates w_r L_r with w_r = b_r / B (its share of the global mean loss L = sum_r w_r L_r; w_r = 1/N for
  equal shards), then the gradients are summed over ranks in one flat all-reduce that also carries w_r L_r (the
  logged loss is the global mean) and a per-parameter "has a gradient" flag (a parameter without a gradient on
  every rank keeps ``grad = None``, so AdamW skips it exactly as in one process). Clipping, the optimiser step and
  EMA then act on identical gradients and weights on every rank. Trade-off: no overlap of communication with the
  backward pass (DDP's buckets), fine for these model sizes.
* **Checkpoints.** Rank 0 writes them (and logs, shows progress, saves the final model); the others wait at a
  barrier, so nobody reads a half-written checkpoint. ``--resume`` reads the same checkpoint on every rank (the
  output folder must be on a filesystem all nodes see). Checkpoints do not depend on N: a run may resume with a
  different number of ranks (same global batch).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size`` (1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not an integer (set by torchrun)") from None


def setup(device: str = "cpu") -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL for ``cuda``, gloo for ``cpu``); returns the context
    and the device this rank trains on (``cuda:LOCAL_RANK`` for a CUDA device). A single process: no-op."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext(), torch.device(device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda under torchrun, but CUDA is not available")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training supports --device cpu (gloo) or cuda (NCCL), not {device!r}")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(minutes=30),
                                **({"device_id": dev} if backend == "nccl" else {}))
    return DistContext(rank, world, local_rank), dev


def teardown() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistContext:
    """The context of the initialised process group, or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def shard_rows(batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of ``batch`` windows that ``rank`` of ``world_size`` trains on:
    lo = rank * batch // world_size (equal shares when world_size divides batch)."""
    if batch < world_size:
        raise ValueError(f"a batch of {batch} windows cannot be split over {world_size} ranks: use a global "
                         f"--batch-size (and a dataset) of at least {world_size} windows")
    return rank * batch // world_size, (rank + 1) * batch // world_size


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting points)."""
    if not ctx.active:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(params: Iterable[nn.Parameter], weighted_loss: torch.Tensor,
                         ctx: DistContext) -> torch.Tensor:
    """Sum the (already weighted) gradients of ``params`` over ranks, in place, with one flat all-reduce; returns
    the sum of ``weighted_loss`` (the global mean loss). A parameter whose gradient is None on every rank keeps
    None; one with a gradient on some rank gets the sum, zeros standing in for the ranks without one."""
    params = [p for p in params if p.requires_grad]
    dtypes = {p.dtype for p in params}
    if len(dtypes) != 1:
        raise ValueError(f"all_reduce_gradients needs parameters of one dtype, got {sorted(map(str, dtypes))}")
    dtype, device = dtypes.pop(), params[0].device
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                     + [has_grad, weighted_loss.detach().reshape(1).to(dtype)])
    dist.all_reduce(flat)
    used = flat[-1 - len(params):-1].tolist()
    offset = 0
    for p, u in zip(params, used):
        n = p.numel()
        if u > 0:
            p.grad = flat[offset:offset + n].view_as(p)
        offset += n
    return flat[-1]


class _AllReduceSum(torch.autograd.Function):
    """y = sum over ranks of x, differentiable: every rank's y depends on every rank's x, so the gradient of x is
    the sum over ranks of the gradients of y (the same all-reduce)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch over all ranks (see module docstring).

    For x (b_r, C, L) on rank r and N = sum_r b_r L values per channel:
        mean = all_reduce(sum x) / N,   var = all_reduce(sum (x - mean)^2) / N   (biased, used to normalise)
        y = (x - mean) / sqrt(var + eps) * weight + bias
        running_mean <- (1 - m) running_mean + m mean,  running_var <- (1 - m) running_var + m var N / (N - 1)
    Eval mode, or no process group, is plain BatchNorm1d. Installed by :func:`global_batchnorm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.new_tensor([xf.numel() // xf.shape[1]])])
        total = all_reduce(local)
        n, mean = total[-1], total[:-1] / total[-1]
        centred = xf - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        return y.to(x.dtype)


@contextlib.contextmanager
def global_batchnorm(*modules: Optional[nn.Module]) -> Iterator[None]:
    """Within the block, every ``nn.BatchNorm1d`` in ``modules`` is a :class:`GlobalBatchNorm1d` (its class is
    switched in place: the same parameters and buffers, the same state_dict keys, so optimiser, EMA and
    checkpoints are untouched); afterwards they are plain BatchNorm1d again. Other BatchNorm kinds are refused."""
    switched = []
    try:
        for module in modules:
            for m in (module.modules() if module is not None else ()):
                if type(m) is nn.BatchNorm1d:
                    m.__class__ = GlobalBatchNorm1d
                    switched.append(m)
                elif isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlobalBatchNorm1d):
                    raise ValueError(f"data-parallel training syncs BatchNorm1d only, found {type(m).__name__}")
        yield
    finally:
        for m in switched:
            m.__class__ = nn.BatchNorm1d


__all__ = ["DistContext", "setup", "teardown", "current", "barrier", "shard_rows", "broadcast_module",
           "all_reduce_gradients", "GlobalBatchNorm1d", "global_batchnorm"]
