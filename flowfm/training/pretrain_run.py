"""One pretraining run from its options: what ``flowfm pretrain`` and ``flowfm compare`` both call.

:func:`add_pretrain_arguments` is the option grammar (the flags of ``flowfm pretrain --help``),
:func:`parse_pretrain_args` reads a list of such words into options (``compare`` variants are written that way),
and :func:`pretrain_run` opens the data, builds or resumes the model (:mod:`flowfm.methods`), owns the output folder
(:mod:`flowfm.run_folder`; rank 0 under ``torchrun``) and trains it (:func:`flowfm.training.pretrain`), returning
a :class:`PretrainResult`. Generator flags given for a method they do not apply to are an error.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from flowfm.argument_types import BATCH, EPOCHS, RATE_HZ, SEED, float_in, int_in
from flowfm.config import ENCODER_VIEWS, Z_NORMS
from flowfm.data.units import UNIT_CHOICES, UNIT_HELP
from flowfm.methods import METHODS

__all__ = ["PretrainResult", "add_pretrain_arguments", "parse_pretrain_args", "pretrain_run"]


@dataclass
class PretrainResult:
    """``out`` the run folder, ``model_dir`` the saved model (``out/model``), ``history`` one dict per epoch."""

    out: Path
    model_dir: Path
    history: list


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(f"pretraining options: {message}")


def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    """The pretraining options (``flowfm pretrain --help``)."""
    p.add_argument("--data", nargs="+", default=["hapt"],
                   help="'hapt', folders in the X.npy layout, folders of shard folders, a quoted glob of them "
                        "('corpus/shard_*'), or continuous (T, C) .npy/.csv recordings in g (needs --recording-fs); "
                        "shards are memory-mapped and read batch by batch")
    p.add_argument("--recording-fs", type=RATE_HZ, default=None,
                   help="sampling rate in Hz of the .npy/.csv recordings in --data (resampled to 30 Hz, 10 s windows "
                        "every 5 s)")
    p.add_argument("--unit", default=None, choices=list(UNIT_CHOICES), help=UNIT_HELP)
    p.add_argument("--exclude-subjects", default=None, metavar="IDS",
                   help="comma list of subject ids whose windows pretraining never sees (e.g. a fold's test "
                        "subjects, for inductive evaluation; needs subject ids: HAPT, shards with pid.npy)")
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="flowfm", choices=list(METHODS),
                   help="flowfm (the method), diffusion (the same networks as a DDPM) or ssl-wearables (multi-task "
                        "self-supervision on the same encoder); all train with the same TrainConfig")
    p.add_argument("--preset", default="small", choices=["small", "harnet10", "tiny"])
    p.add_argument("--epochs", type=EPOCHS, default=20)
    p.add_argument("--batch-size", type=BATCH, default=64)
    p.add_argument("--lr", type=float_in(0, 10, lo_open=True), default=2e-3)
    p.add_argument("--weight-decay", type=float_in(0, 10), default=1e-2)
    p.add_argument("--warmup-steps", type=int_in(0, 10_000_000), default=100)
    p.add_argument("--grad-clip", type=float_in(0, 1e6), default=1.0, help="0 disables clipping")
    p.add_argument("--ema", type=float_in(0, 1, hi_open=True), default=None,
                   help="EMA decay of the weights, e.g. 0.999")
    p.add_argument("--keep-checkpoints", type=int_in(0, 100_000), default=2,
                   help="epoch checkpoints kept on disk (0 = all, e.g. for probing quality over training time)")
    p.add_argument("--encoder-lr-scale", type=float_in(0, 1000), default=None,
                   help="encoder learning rate = lr * this (default: 0.1 for flowfm/diffusion, the best HAPT "
                        "linear probe of the rates tried, docs/results.md; 1 for ssl-wearables)")
    p.add_argument("--encoder-view", default=None, choices=list(ENCODER_VIEWS),
                   help="what the encoder sees (default: the config's, augment); the shift views re-cut each "
                        "window from its overlapping neighbours (windows in recording order, hop = L/2)")
    p.add_argument("--view-max-shift", type=int_in(0, 1_000_000), default=None,
                   help="shift views: largest time shift in samples (default 150 = 5 s at 30 Hz)")
    p.add_argument("--p-uncond", type=float_in(0, 1), default=None,
                   help="condition dropout (default 0: it cost the HAPT encoder, docs/results.md; 0.1 trains a null "
                        "vector with the network, for guidance)")
    p.add_argument("--null-fit-steps", type=int_in(0, 1_000_000), default=100,
                   help="flowfm/diffusion with --p-uncond 0: Adam steps that fit the null vector after training, "
                        "the weights frozen, so guidance works (0 skips)")
    p.add_argument("--z-bank-size", type=int_in(0, 10_000_000), default=1024,
                   help="flowfm/diffusion: representations of training windows stored with the model, the prior "
                        "of unconditional sampling (0 skips)")
    p.add_argument("--sigma-min", type=float_in(0, 1, hi_open=True), default=None,
                   help="flowfm: minimum path noise (default 0)")
    p.add_argument("--t-sampling", default=None, choices=["uniform", "logit_normal"],
                   help="flowfm: training-time distribution (default logit_normal, docs/results.md)")
    p.add_argument("--logit-normal-mean", type=float_in(-100, 100), default=None,
                   help="flowfm, logit_normal: t = sigmoid(N(mean, 1)); default 1.0 favours the data end (t = 1), "
                        "where the generator needs z least")
    p.add_argument("--time-embedding-scale", type=float_in(0, 1e6, lo_open=True), default=None,
                   help="flowfm: the velocity network embeds sinusoidal(a t); default a = 1 (1000, the DDPM "
                        "convention, makes the field oscillate in t faster than few-step solvers resolve)")
    p.add_argument("--z-norm", default=None, choices=list(Z_NORMS),
                   help="flowfm/diffusion: how the generator reads z: layer (default; LayerNorm without affine) or "
                        "none (the plain projection; docs/results.md, Design variants)")
    p.add_argument("--z-rank", type=int_in(1, 65536), default=None,
                   help="flowfm/diffusion: the generator sees z through a rank-r linear bottleneck (default: full "
                        "Linear(D, cond_dim); docs/results.md, Design variants)")
    p.add_argument("--stop-grad-encoder", action="store_true")
    p.add_argument("--ssl-augment", default=None, choices=["none", "batch", "window"],
                   help="ssl-wearables: axis swap + random 3-D rotation before the pretext transforms, drawn once per "
                        "batch (default) or per window, or none")
    p.add_argument("--ssl-tasks", default=None, metavar="TASKS",
                   help="ssl-wearables: comma list of pretext tasks from aot, permute, time_warp (default all three)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument("--init-encoder", default=None, metavar="PATH",
                   help="start the encoder from SSL-Wearables' published harnet10 weights (a state-dict file, read "
                        "with torch.load(weights_only=True)); needs --preset harnet10")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (said in the log)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--backend", default=None, choices=["auto", "eager", "triton", "cuda"],
                   help="kernel backend (default: $FLOWFM_BACKEND or auto)")


def _ssl_config(augment, tasks) -> dict:
    """SSLWearablesConfig fields of --ssl-augment (none: neither axis swap nor rotation; batch / window: both,
    drawn once per batch or per window) and --ssl-tasks (comma list)."""
    out = {}
    if augment is not None:
        on = augment != "none"
        out.update(axis_swap=on, rotation=on, **({"augment_scope": augment} if on else {}))
    if tasks is not None:
        out["tasks"] = tuple(t.strip() for t in tasks.split(",") if t.strip())
    return out


def parse_pretrain_args(words: Sequence[str]) -> argparse.Namespace:
    """Options from ``flowfm pretrain`` words (without the command name); ValueError naming a bad flag."""
    p = _RaisingParser(prog="flowfm pretrain", add_help=False)
    add_pretrain_arguments(p)
    args = p.parse_args(list(words))
    args.argv = ["pretrain", *words]
    return args


def pretrain_run(args) -> PretrainResult:
    import torch

    from flowfm.training import distributed

    method = getattr(args, "method", "flowfm")
    # generator flags: (value or None when not given, methods they apply to); giving one to another method is an
    # error; flags not given keep the model config's defaults
    generator_flags = {
        "--encoder-view": (args.encoder_view, ("flowfm", "diffusion")),
        "--view-max-shift": (args.view_max_shift, ("flowfm", "diffusion")),
        "--p-uncond": (args.p_uncond, ("flowfm", "diffusion")),
        "--stop-grad-encoder": (args.stop_grad_encoder or None, ("flowfm", "diffusion")),
        "--z-norm": (args.z_norm, ("flowfm", "diffusion")),
        "--z-rank": (args.z_rank, ("flowfm", "diffusion")),
        "--sigma-min": (args.sigma_min, ("flowfm",)),
        "--t-sampling": (args.t_sampling, ("flowfm",)),
        "--logit-normal-mean": (args.logit_normal_mean, ("flowfm",)),
        "--time-embedding-scale": (args.time_embedding_scale, ("flowfm",)),
        "--ssl-augment": (args.ssl_augment, ("ssl-wearables",)),
        "--ssl-tasks": (args.ssl_tasks, ("ssl-wearables",)),
    }
    if not args.resume:
        for flag, (value, methods) in generator_flags.items():
            if method not in methods and value is not None:
                raise ValueError(f"{flag} applies to --method {' / '.join(methods)} only, not {method}")

    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} but no CUDA device is available here; expected --device cpu")
    from flowfm.data.corpus import open_corpus

    # one lazily read (N, C, L) corpus over all --data sources, never concatenated in memory
    x = open_corpus(args.data, recording_fs=args.recording_fs, unit=args.unit)
    data_fs = x.fs
    if args.exclude_subjects:
        x = x.without_subjects(s.strip() for s in args.exclude_subjects.split(",") if s.strip())
    if not args.resume and len(x) < args.batch_size:
        raise ValueError(f"--data has {len(x)} window(s), fewer than --batch-size {args.batch_size}; expected at "
                         "least one full batch (lower --batch-size, or add data)")
    ctx, device = distributed.setup(args.device)  # under torchrun: join the process group (else a no-op)
    out = Path(args.out)
    import contextlib

    from flowfm.run_folder import owned

    # rank 0 owns the folder for the whole job; other ranks would see its lock and files as someone else's run
    guard = (owned(out, resume=args.resume, overwrite=getattr(args, "overwrite", False), what="pretraining run",
                   writes=RUN_OUTPUTS)
             if ctx.is_main else contextlib.nullcontext())
    with guard:
        return _train(args, x, ctx, device, out, method, generator_flags, data_fs)


#: TrainConfig fields and the ``flowfm pretrain`` options that set them (--resume checks them against the run)
RESUME_FIXED = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay",
                "warmup_steps": "warmup_steps", "seed": "seed", "ema": "ema_decay",
                "encoder_lr_scale": "encoder_lr_scale", "null_fit_steps": "null_fit_steps",
                "z_bank_size": "z_bank_size"}


def given_options(args) -> set:
    """The option names (``lr``, ``keep_checkpoints``, ...) written on the command line (``args.argv``), whatever
    their value: an option left out takes the run's value on ``--resume``, one given must agree with it."""
    words = getattr(args, "argv", None) or []
    return {w[2:].split("=", 1)[0].replace("-", "_") for w in words if w.startswith("--")}


def data_fingerprint(x) -> dict:
    """What identifies a pretraining corpus cheaply: its shape and the SHA-256 of its first, middle and last
    window (a few KB read from a memory-mapped corpus)."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for i in sorted({0, len(x) // 2, len(x) - 1}):
        digest.update(np.ascontiguousarray(x[i:i + 1], dtype=np.float32).tobytes())
    return {"shape": [len(x), *map(int, x.shape[1:])], "sha256_sampled": digest.hexdigest()}


def check_resume_options(args, out: Path, model, train_cfg, x, generator_flags: dict):
    """The stored TrainConfig of the run in ``out`` (with ``--keep-checkpoints`` applied if given) if ``args`` may
    continue it; ValueError naming every option or data difference that would mix two runs: an option given
    (:func:`given_options`) with another value than the run's (options not given take the run's value), other
    data (windows, shape, fingerprint, ``--data``, ``--exclude-subjects``), another preset or generator
    setting."""
    from dataclasses import replace

    named, given = given_options(args), vars(args)
    stored, changed = vars(train_cfg), []
    for option, field_name in RESUME_FIXED.items():
        value = given.get(option)
        if option in named and value != stored.get(field_name):
            changed.append(f"--{option.replace('_', '-')} {value} (the run has {stored.get(field_name)})")
    if "grad_clip" in named and (given["grad_clip"] or None) != stored["grad_clip"]:
        changed.append(f"--grad-clip {given['grad_clip']} (the run has {stored['grad_clip'] or 0})")
    config = model.config
    if "preset" in named and given["preset"] != getattr(config, "preset", None):
        changed.append(f"--preset {given['preset']} (the run has {getattr(config, 'preset', None)})")
    for flag, (value, _) in generator_flags.items():
        name = flag.lstrip("-").replace("-", "_")
        if value is not None and not flag.startswith("--ssl-") and getattr(config, name, value) != value:
            changed.append(f"{flag} {value} (the run has {getattr(config, name)})")
    data_path = out / "data.json"
    record = json.loads(data_path.read_text()) if data_path.is_file() else {}
    if record:
        if [str(Path(d).resolve()) if Path(d).exists() else d for d in record.get("data", [])] != \
                [str(Path(d).resolve()) if Path(d).exists() else d for d in args.data]:
            changed.append(f"--data {' '.join(args.data)} (the run has {' '.join(record.get('data', []))})")
        if record.get("exclude_subjects") != args.exclude_subjects:
            changed.append(f"--exclude-subjects {args.exclude_subjects} (the run has {record.get('exclude_subjects')})")
        fingerprint = record.get("fingerprint")
        if record.get("windows") not in (None, len(x)):
            changed.append(f"data of {len(x)} windows (the run's had {record['windows']})")
        elif fingerprint is not None and fingerprint != data_fingerprint(x):
            changed.append(f"data of shape {tuple(x.shape)} whose windows differ from the run's (shape "
                           f"{tuple(fingerprint['shape'])})")
    if hasattr(config, "window") and tuple(x.shape[1:]) != (config.in_channels, config.window):
        changed.append(f"windows {tuple(x.shape[1:])} (the run's model takes ({config.in_channels}, {config.window}))")
    if changed:
        raise ValueError(f"--resume would continue the run in {out} with other settings or data: "
                         f"{'; '.join(changed)}; resume with the run's own options, or start a new run (another "
                         f"--out, or --overwrite)")
    if "keep_checkpoints" in named and given["keep_checkpoints"] != stored["keep_checkpoints"]:
        print(f"--resume: keeping {given['keep_checkpoints']} checkpoints (the run had {stored['keep_checkpoints']})")
        return replace(train_cfg, keep_checkpoints=given["keep_checkpoints"])
    return train_cfg


#: what a pretraining run writes into its --out (and --overwrite removes; other files are left)
RUN_OUTPUTS = ("model", "checkpoints", "history.json", "train_config.json", "data.json")


def _train(args, x, ctx, device, out, method, generator_flags, data_fs) -> PretrainResult:
    import torch

    from flowfm.methods import build_model
    from flowfm.training import TrainConfig, distributed, pretrain

    if args.resume:
        from flowfm.checkpoint import load_model
        from flowfm.training.resume import resume_point

        point = resume_point(out / "checkpoints", log=None)  # the trainer says which one it resumes from
        if point is None:
            raise FileNotFoundError(f"--resume but no complete checkpoint under {out / 'checkpoints'}")
        latest = point[0]
        model = load_model(latest, backend=args.backend)
        if method != "flowfm" and model.method != method:
            raise ValueError(f"--method {method} but {latest} holds a {model.method} model")
        train_cfg = TrainConfig(**json.loads((out / "train_config.json").read_text()))
        train_cfg = check_resume_options(args, out, model, train_cfg, x, generator_flags)
    else:
        torch.manual_seed(args.seed)
        config_kwargs = dict(preset=args.preset, in_channels=x.shape[1], window=x.shape[2])
        config_kwargs.update({flag.lstrip("-").replace("-", "_"): value
                              for flag, (value, methods) in generator_flags.items()
                              if value is not None and not flag.startswith("--ssl-")})
        config_kwargs.update(_ssl_config(args.ssl_augment, args.ssl_tasks))
        # mean/std from at most NORMALIZER_WINDOWS seeded windows, read chunk by chunk (all of a small corpus)
        model = build_model(method, config_kwargs, backend=args.backend).fit_normalizer(x.subsample(seed=args.seed))
        if args.init_encoder:
            from flowfm.interop.ssl_wearables import load_ssl_wearables_encoder

            loaded = load_ssl_wearables_encoder(model.encoder, args.init_encoder)
            print(f"encoder initialised from SSL-Wearables weights {args.init_encoder} ({loaded['loaded']} tensors; "
                  f"heads skipped: {len(loaded['skipped_heads'])})")
        from flowfm.data.window_spec import WindowSpec, default_channels

        model.data_spec = WindowSpec(data_fs, x.shape[2], max(1, x.shape[2] // 2), "g", default_channels(x.shape[1]))
        train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                                grad_clip=args.grad_clip or None, ema_decay=args.ema, seed=args.seed,
                                encoder_lr_scale=args.encoder_lr_scale, keep_checkpoints=args.keep_checkpoints,
                                null_fit_steps=args.null_fit_steps, z_bank_size=args.z_bank_size)
        out.mkdir(parents=True, exist_ok=True)
        from dataclasses import asdict

        from flowfm.data.atomic import atomic_write_text

        if ctx.is_main:
            atomic_write_text(out / "train_config.json", json.dumps(asdict(train_cfg), indent=2))
            atomic_write_text(out / "data.json", json.dumps({"data": list(args.data), "windows": len(x),
                                                            "exclude_subjects": args.exclude_subjects,
                                                            "fingerprint": data_fingerprint(x)}, indent=2))
    if ctx.is_main:
        print(f"pretraining {model.method} ({model.num_parameters():,} parameters) on {len(x)} windows "
              f"{tuple(x.shape[1:])} for {train_cfg.epochs} epochs -> {out}"
              + (f" on {ctx.world_size} ranks (global batch {train_cfg.batch_size})" if ctx.active else ""))
    try:
        history = pretrain(model, x, train_cfg, out, resume=args.resume, device=device,
                           progress=not args.no_progress)
    finally:
        distributed.teardown()
    if ctx.is_main:
        print(f"done: final loss {history[-1]['loss']:.4f}; model in {out / 'model'}")
    return PretrainResult(out=out, model_dir=out / "model", history=history)
