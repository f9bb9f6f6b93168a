"""The pretraining loop shared by FlowFM and the baselines: any model with ``loss(x, generator=...)``.

AdamW (the encoder at ``encoder_lr_scale`` times the rate: at full rate the joint objective quickly turned the
HAPT encoder into a worse linear-probe feature extractor than its random init, docs/results.md), warm-up + cosine
schedule, gradient clipping, optional weight EMA, a seeded ``torch.Generator`` for every
random draw of the objective, a per-epoch data order derived from (seed, epoch), tqdm progress with loss and
windows/s, and an atomic checkpoint folder per epoch. ``resume=True`` restores model, optimiser, scheduler, EMA,
generator and epoch, so a resumed run ends with the same weights as an uninterrupted one. A NaN/inf loss stops the
run with :class:`TrainingDivergedError`; the last good checkpoint stays untouched. SIGINT / SIGTERM finish the step,
write a resumable mid-epoch checkpoint and raise :class:`~flowfm.training.interrupt.TrainingInterrupted`
(:mod:`flowfm.training.interrupt`).

Data-parallel: when a process group of N > 1 ranks is initialised (``torchrun``, see
:mod:`flowfm.training.distributed`), each rank trains on its rows of every global batch of ``batch_size``, with the
single process's random draws for those rows, BatchNorm over the global batch and summed gradients, so the run
equals the single-process one up to summation order; rank 0 alone logs and writes checkpoints.

Layout of ``out_dir``: ``checkpoints/epoch_0003/`` (model files + train_state), ``checkpoints/latest`` (name of
the newest complete one), ``model/`` (final weights: the EMA weights when EMA is on, with the representation bank
and, after training without condition dropout, the fitted null vector; see :func:`_finish_generator`),
``history.json``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from flowfm.checkpoint import CONFIG, save_model, write_model_files, write_state
from flowfm.data.atomic import atomic_dir, atomic_write_text
from flowfm.data.time_shift import TimeShiftedCuts
from flowfm.profiling import nvtx_range
from flowfm.rng import ShardedGenerator
from flowfm.training import distributed
from flowfm.training.crash_hook import pause_point
from flowfm.training.interrupt import TrainingInterrupted, stop_requests
from flowfm.training.null_fit import fit_null_if_needed
from flowfm.training.resume import RUN_ID_FILE, named_latest, new_run_id, read_run_id, resume_point, state_run_id
from flowfm.training.representation_bank import DEFAULT_BANK_SIZE, fill_representation_bank
from flowfm.training.schedule import warmup_cosine
from flowfm.views import needs_shifted_cuts


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or inf."""


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: Optional[float] = 1.0
    ema_decay: Optional[float] = None
    seed: int = 0
    keep_checkpoints: int = 2
    encoder_lr_scale: Optional[float] = None
    null_fit_steps: int = 100
    z_bank_size: int = DEFAULT_BANK_SIZE

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0 (0 keeps all), got {self.keep_checkpoints}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.encoder_lr_scale is not None and not self.encoder_lr_scale > 0:
            raise ValueError(f"encoder_lr_scale must be > 0, got {self.encoder_lr_scale}")
        if self.null_fit_steps < 0 or self.z_bank_size < 0:
            raise ValueError(f"null_fit_steps and z_bank_size must be >= 0 (0 skips), got {self.null_fit_steps}, "
                             f"{self.z_bank_size}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The data order of an epoch: a permutation of range(n) that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _batches(x, order: np.ndarray, batch_size: int, device, ctx: distributed.DistContext,
             shifts: Optional[TimeShiftedCuts] = None, seed: int = 0, epoch: int = 0, first: int = 0):
    """Yield (windows, shifted, lo, hi, total): this rank's rows [lo, hi) of each global batch of ``total``
    windows (all rows in a single process), read as x[sorted global indices[lo:hi]]; ``shifted`` their time-shifted
    cuts when ``shifts`` is given (drawn for the whole global batch from (seed, epoch, batch start)), else None.
    ``first`` batches are skipped (a run resumed mid-epoch)."""
    usable = len(order) - len(order) % batch_size if len(order) >= batch_size else len(order)
    for start in range(first * batch_size, usable, batch_size):
        idx = np.sort(order[start:start + batch_size])  # sorted reads are sequential on a memmap
        lo, hi = distributed.shard_rows(len(idx), ctx.rank, ctx.world_size) if ctx.active else (0, len(idx))
        rows = np.ascontiguousarray(x[idx[lo:hi]], dtype=np.float32)
        shifted = None
        if shifts is not None:
            cuts = shifts.draw(idx, np.random.default_rng([seed, epoch, start]), slice(lo, hi), base=rows)
            shifted = torch.from_numpy(cuts).to(device)
        yield torch.from_numpy(rows).to(device), shifted, lo, hi, len(idx)


def _param_groups(model, config: TrainConfig) -> list[dict]:
    """The encoder's parameters at ``lr * scale``, everything else at ``lr``; ``scale`` is ``encoder_lr_scale`` or,
    when that is None, the model's ``default_encoder_lr_scale`` (0.1 for the generative models, 1 otherwise)."""
    scale = config.encoder_lr_scale
    if scale is None:
        scale = getattr(model, "default_encoder_lr_scale", 1.0)
    encoder = getattr(model, "encoder", None)
    if encoder is None or scale == 1.0:
        return [{"params": list(model.parameters())}]
    enc_ids = {id(p) for p in encoder.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in enc_ids], "lr": config.lr * scale},
            {"params": [p for p in model.parameters() if id(p) not in enc_ids]}]


def _make_ema(model, decay):
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def pretrain(model, x, config: TrainConfig, out_dir, *, resume: bool = False, progress: bool = True,
             device=None, on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> list[dict]:
    """Train ``model`` on windows x (N, C, L) (numpy / memmap) and write checkpoints under ``out_dir``.

    Returns the per-epoch history (loss, seconds, windows/s, lr). ``on_epoch_end(epoch, record)`` is called after
    each epoch's checkpoint (e.g. for probe evaluation)."""
    out_dir, device = Path(out_dir), torch.device(device or "cpu")
    ckpt_dir = out_dir / "checkpoints"
    ctx = distributed.current()
    model.to(device).train()
    distributed.broadcast_module(model, ctx)
    n = len(x)
    steps_per_epoch = max(1, n // config.batch_size) if n >= config.batch_size else 1
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, config.epochs * steps_per_epoch, config.warmup_steps, config.min_lr_ratio)
    ema = _make_ema(model, config.ema_decay)
    shifts = _time_shifted_cuts(model, x)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict] = []
    start_epoch, skip, partial = 0, 0, (0.0, 0, 0.0)

    point = resume_point(ckpt_dir, log=print if ctx.is_main else None) if resume else None
    if resume and point is None:
        raise FileNotFoundError(f"--resume: no complete checkpoint under {ckpt_dir}")
    run_id = (read_run_id(ckpt_dir) or point[1].get("run_id")) if point is not None else None
    run_id = run_id or new_run_id()
    if ctx.is_main and read_run_id(ckpt_dir) is None:
        atomic_write_text(ckpt_dir / RUN_ID_FILE, run_id)
    if point is not None:
        latest, state = point
        from flowfm.checkpoint import load_model

        model.load_state_dict(load_model(latest).state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        history, start_epoch = json.loads(state["history"]), int(state["epoch"]) + 1
        if "resume_step" in state:  # written on SIGINT / SIGTERM mid-epoch
            skip = int(state["resume_step"])
            partial = (float(state["epoch_total"]), int(state["epoch_count"]), float(state["epoch_seconds"]))
        distributed.barrier(ctx)  # every rank has read the checkpoint before rank 0 may write the next one
        if ctx.is_main:
            _remove_stale_temp_folders(ckpt_dir)

    show = progress and ctx.is_main
    with (distributed.global_batchnorm(model) if ctx.active else contextlib.nullcontext(),
          stop_requests(enabled=not ctx.active) as stop):
        for epoch in range(start_epoch, config.epochs):
            total, count = partial[:2] if epoch == start_epoch else (0.0, 0)
            t0 = time.perf_counter() - (partial[2] if epoch == start_epoch else 0.0)
            first = skip if epoch == start_epoch else 0
            bar = tqdm(_batches(x, epoch_order(n, config.seed, epoch), config.batch_size, device, ctx, shifts,
                                config.seed, epoch, first),
                       total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not show, leave=False)
            for step, (batch, shifted, lo, hi, rows) in enumerate(bar, start=first):
                pause_point(f"step:{epoch * steps_per_epoch + step + 1}")
                if ctx.active:
                    loss = _distributed_backward(model, optimizer, batch, ShardedGenerator(generator, lo, hi, rows),
                                                 ctx, shifted)
                    _check_finite(loss, epoch, step, ckpt_dir)
                else:
                    loss = model.loss(batch, generator=generator, **_shift_kwargs(shifted))
                    _check_finite(loss, epoch, step, ckpt_dir)
                    optimizer.zero_grad(set_to_none=True)
                    with nvtx_range("flowfm/backward"):
                        loss.backward()
                with nvtx_range("flowfm/optimizer_step"):
                    if config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    if ema is not None:
                        ema.update_parameters(model)
                total, count = total + loss.item() * rows, count + rows
                bar.set_postfix(loss=f"{total / count:.4f}",
                                win_s=f"{count / (time.perf_counter() - t0):.0f}")
                if stop.requested and step + 1 < steps_per_epoch:
                    bar.close()
                    where = _save_interrupted(ckpt_dir, epoch, step + 1, (total, count, time.perf_counter() - t0),
                                              model, optimizer, scheduler, ema, generator, history, config, run_id)
                    raise TrainingInterrupted(
                        f"stopped by {stop.name} after step {step + 1} of epoch {epoch + 1}; resumable checkpoint "
                        f"{where}; continue with the same command and --resume", stop.signum)
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": seconds,
                      "windows_per_s": count / seconds, "lr": scheduler.get_last_lr()[0]}
            history.append(record)
            if ctx.is_main:
                _save_checkpoint(ckpt_dir, epoch, model, optimizer, scheduler, ema, generator, history, config,
                                 run_id)
            distributed.barrier(ctx)  # no rank runs ahead (or reads) before the checkpoint is complete
            if show:
                tqdm.write(f"epoch {epoch + 1}/{config.epochs}  loss {record['loss']:.4f}  {seconds:.1f}s  "
                           f"{record['windows_per_s']:.0f} windows/s")
            if on_epoch_end is not None and ctx.is_main:
                on_epoch_end(epoch, record)
            if stop.requested and epoch + 1 < config.epochs:  # the epoch's checkpoint is the resumable one
                raise TrainingInterrupted(
                    f"stopped by {stop.name} after epoch {epoch + 1}; resumable checkpoint "
                    f"{ckpt_dir / _checkpoint_name(epoch)}; continue with the same command and --resume",
                    stop.signum)

    if ctx.is_main:
        final = ema.module if ema is not None else model
        _finish_generator(final, x, config, device, progress=show)
        save_model(final, out_dir / "model", {"train": dataclasses.asdict(config), "history": history})
        atomic_write_text(out_dir / "history.json", json.dumps(history, indent=2))
    distributed.barrier(ctx)
    return history


def _finish_generator(model, x, config: TrainConfig, device, progress: bool = False) -> None:
    """After the last epoch, for models with a conditional generator: fit the null vector when condition dropout
    was off (:mod:`flowfm.training.null_fit`) and store the representation bank
    (:mod:`flowfm.training.representation_bank`), both seeded by ``config.seed``."""
    if getattr(model, "null_z", None) is None:
        return
    with nvtx_range("flowfm/finish_generator"):
        fit_null_if_needed(model, x, config.null_fit_steps, seed=config.seed, device=device, progress=progress)
        fill_representation_bank(model, x, config.z_bank_size, seed=config.seed, device=device)


def _check_finite(loss: torch.Tensor, epoch: int, step: int, ckpt_dir: Path) -> None:
    if not torch.isfinite(loss):
        good = named_latest(ckpt_dir)
        raise TrainingDivergedError(
            f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopping. Last good "
            f"checkpoint: {good if good else 'none yet'} (resume from it with a lower --lr)")


def _shift_kwargs(shifted: Optional[torch.Tensor]) -> dict:
    """``model.loss`` keywords: the time-shifted cuts only when there are any (not every model takes them)."""
    return {} if shifted is None else {"shifted": shifted}


def _time_shifted_cuts(model, x) -> Optional[TimeShiftedCuts]:
    """The cutter of the model's ``shift`` encoder view, None for every other view and model."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "encoder_view") or not needs_shifted_cuts(config):
        return None
    return TimeShiftedCuts(x, config.view_max_shift)


def _distributed_backward(model, optimizer, batch: torch.Tensor, draws: ShardedGenerator,
                          ctx: distributed.DistContext, shifted: Optional[torch.Tensor] = None) -> torch.Tensor:
    """This rank's share of a data-parallel step: back-propagate w L_r with w = b_r / B (its share of the global
    mean loss), sum the gradients over ranks; returns the global mean loss (the same on every rank)."""
    weight = (draws.hi - draws.lo) / draws.total
    loss = model.loss(batch, generator=draws, **_shift_kwargs(shifted))
    optimizer.zero_grad(set_to_none=True)
    with nvtx_range("flowfm/backward"):
        (loss * weight).backward()
    with nvtx_range("flowfm/all_reduce"):
        return distributed.all_reduce_gradients(model.parameters(), loss.detach() * weight, ctx)


def _remove_stale_temp_folders(ckpt_dir: Path) -> None:
    """Delete the hidden temp folders (``.epoch_0003.tmp-*``) a killed run left mid-write; they were never
    checkpoints (only a complete folder is renamed to ``epoch_*`` and named in ``latest``)."""
    for tmp in ckpt_dir.glob(".epoch_*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch + 1:04d}"


def _train_state(epoch, optimizer, scheduler, ema, generator, history, config, run_id) -> dict:
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "generator": generator.get_state(), "epoch": epoch, "history": json.dumps(history),
             "train_config": dataclasses.asdict(config), "run_id": run_id}
    if ema is not None:
        state["ema"] = ema.state_dict()
    return state


def _save_interrupted(ckpt_dir: Path, epoch: int, steps_done: int, running: tuple, model, optimizer, scheduler,
                      ema, generator, history, config, run_id) -> Path:
    """``interrupted_eEEEE_sSSSSS``: the state after ``steps_done`` steps of epoch ``epoch`` (0-based), with the
    epoch's running (loss total, windows, seconds); ``latest`` names it. Removed by the next epoch checkpoint."""
    name = f"interrupted_e{epoch + 1:04d}_s{steps_done:06d}"
    state = _train_state(epoch - 1, optimizer, scheduler, ema, generator, history, config, run_id)
    state.update(resume_step=steps_done, epoch_total=running[0], epoch_count=running[1], epoch_seconds=running[2])
    _write_checkpoint(ckpt_dir, name, model, state, {"epoch": epoch, "steps_into_next_epoch": steps_done})
    return ckpt_dir / name


def _write_checkpoint(ckpt_dir: Path, name: str, model, state: dict, metadata: dict, pause: str = "") -> None:
    """The folder ``ckpt_dir/name`` (model files + train state bound to those weights by their SHA-256), built
    hidden and renamed, then ``latest``."""
    with atomic_dir(ckpt_dir / name) as tmp:
        write_model_files(model, Path(tmp), metadata)
        if pause:
            pause_point(pause)
        state = dict(state, model_sha256=json.loads((Path(tmp) / CONFIG).read_text())["weights_sha256"])
        write_state(tmp, "train_state", state)
    atomic_write_text(ckpt_dir / "latest", name)


def _save_checkpoint(ckpt_dir: Path, epoch: int, model, optimizer, scheduler, ema, generator, history, config,
                     run_id):
    state = _train_state(epoch, optimizer, scheduler, ema, generator, history, config, run_id)
    _write_checkpoint(ckpt_dir, _checkpoint_name(epoch), model, state, {"epoch": epoch + 1},
                      pause=f"checkpoint:{epoch + 1}")
    ours = lambda p: state_run_id(p) in (None, run_id)  # noqa: E731  (never prune another run's checkpoints)
    for old in ckpt_dir.glob("interrupted_e*"):  # superseded by this complete epoch
        if ours(old):
            shutil.rmtree(old, ignore_errors=True)
    complete = sorted(p for p in ckpt_dir.glob("epoch_*") if p.is_dir() and ours(p))
    if config.keep_checkpoints > 0:  # 0 keeps every epoch
        for old in complete[:-config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
