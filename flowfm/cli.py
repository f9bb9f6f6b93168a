"""The ``flowfm`` command line: demo, pretrain, evaluate, sample, info (``flowfm <command> --help``)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


def _dataset(spec: str):
    from flowfm.data import load_folder, load_hapt

    return load_hapt() if spec == "hapt" else load_folder(spec)


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, choices=["auto", "eager", "triton", "cuda"],
                   help="kernel backend (default: $FLOWFM_BACKEND or auto)")


def cmd_demo(args) -> int:
    from flowfm.demo import run_demo

    run_demo(args.out, quick=args.quick, epochs=args.epochs, seed=args.seed, backend=args.backend,
             progress=not args.no_progress)
    return 0


def cmd_pretrain(args) -> int:
    import numpy as np
    import torch

    from flowfm.baselines import build_model
    from flowfm.training import TrainConfig, pretrain

    method = getattr(args, "method", "flowfm")
    # generator flags: (value, default, methods they apply to); a non-default value for another method is an error
    generator_flags = {
        "--encoder-view": (args.encoder_view, "augment", ("flowfm", "diffusion")),
        "--p-uncond": (args.p_uncond, 0.1, ("flowfm", "diffusion")),
        "--stop-grad-encoder": (args.stop_grad_encoder, False, ("flowfm", "diffusion")),
        "--sigma-min": (args.sigma_min, 0.0, ("flowfm",)),
        "--t-sampling": (args.t_sampling, "uniform", ("flowfm",)),
    }
    if not args.resume:
        for flag, (value, default, methods) in generator_flags.items():
            if method not in methods and value != default:
                raise ValueError(f"{flag} applies to --method {' / '.join(methods)} only, not {method}")

    datasets = [_dataset(spec) for spec in args.data]
    x = datasets[0].x if len(datasets) == 1 else np.concatenate([d.x for d in datasets])
    device = torch.device(args.device)
    out = Path(args.out)
    if args.resume:
        from flowfm.checkpoint import load_model
        from flowfm.training.trainer import _latest_checkpoint

        latest = _latest_checkpoint(out / "checkpoints")
        if latest is None:
            print(f"error: --resume but no complete checkpoint under {out / 'checkpoints'}", file=sys.stderr)
            return 2
        model = load_model(latest, backend=args.backend)
        if method != "flowfm" and model.method != method:
            raise ValueError(f"--method {method} but {latest} holds a {model.method} model")
        train_cfg = TrainConfig(**json.loads((out / "train_config.json").read_text()))
    else:
        torch.manual_seed(args.seed)
        config_kwargs = dict(preset=args.preset, in_channels=x.shape[1], window=x.shape[2])
        config_kwargs.update({flag.lstrip("-").replace("-", "_"): value
                              for flag, (value, _, methods) in generator_flags.items() if method in methods})
        model = build_model(method, config_kwargs, backend=args.backend).fit_normalizer(x)
        train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                                grad_clip=args.grad_clip or None, ema_decay=args.ema, seed=args.seed,
                                encoder_lr_scale=args.encoder_lr_scale)
        out.mkdir(parents=True, exist_ok=True)
        from dataclasses import asdict

        from flowfm.data.atomic import atomic_write_text

        atomic_write_text(out / "train_config.json", json.dumps(asdict(train_cfg), indent=2))
    print(f"pretraining {model.method} ({model.num_parameters():,} parameters) on {len(x)} windows "
          f"{tuple(x.shape[1:])} for {train_cfg.epochs} epochs -> {out}")
    history = pretrain(model, x, train_cfg, out, resume=args.resume, device=device, progress=not args.no_progress)
    print(f"done: final loss {history[-1]['loss']:.4f}; model in {out / 'model'}")
    return 0


def cmd_evaluate(args) -> int:
    import numpy as np
    import torch

    from flowfm.config import FlowFMConfig
    from flowfm.data.atomic import atomic_write_text
    from flowfm.evaluation import encode_windows, linear_probe
    from flowfm.model import FlowFM

    if args.mode != "linear":
        print(f"error: --mode {args.mode} is not implemented yet (available: linear)", file=sys.stderr)
        return 2
    ds = _dataset(args.data).labelled()
    if args.checkpoint:
        model, name = FlowFM.load(args.checkpoint), str(args.checkpoint)
    elif args.encoder == "random":
        torch.manual_seed(args.seed)
        model, name = FlowFM(FlowFMConfig(preset=args.preset, in_channels=ds.x.shape[1], window=ds.x.shape[2])), \
            "random_init"
    else:
        print("error: pass --checkpoint DIR or --encoder random", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    feats = encode_windows(model, ds.x)
    results = [linear_probe(feats, ds.y, ds.pid, n_folds=args.folds, loso=args.loso,
                            label_subjects=args.label_subjects, draws=args.draws, seed=seed)
               for seed in range(args.seeds)]
    f1 = [r["macro_f1"]["mean"] for r in results]
    kappa = [r["kappa"]["mean"] for r in results]
    report = {"model": name, "data": args.data, "mode": args.mode, "folds": results[0]["folds"],
              "label_subjects": args.label_subjects, "seeds": args.seeds, "draws": args.draws,
              "macro_f1_mean": float(np.mean(f1)), "macro_f1_sd": float(np.std(f1)),
              "kappa_mean": float(np.mean(kappa)), "seconds": time.perf_counter() - t0, "per_seed": results}
    print(f"{name}: macro-F1 {report['macro_f1_mean']:.3f} +- {report['macro_f1_sd']:.3f}, kappa "
          f"{report['kappa_mean']:.3f} ({report['folds']} subject-wise folds, label subjects "
          f"{args.label_subjects or 'all'}, {args.seeds} seed(s))")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from flowfm.data.atomic import atomic_open
    from flowfm.model import FlowFM
    from flowfm.sampling import fast_sample

    model = FlowFM.load(args.checkpoint, map_location=args.device, backend=args.backend)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    kwargs = dict(steps=args.steps, method=args.method, guidance=args.guidance, generator=generator)
    if args.cond_data:
        ds = _dataset(args.cond_data)
        idx = np.random.default_rng(args.seed).choice(len(ds), size=min(args.n, len(ds)), replace=False)
        kwargs["x_ref"] = torch.from_numpy(np.ascontiguousarray(ds.x[np.sort(idx)])).to(args.device)
    else:
        kwargs["n"] = args.n
    t0 = time.perf_counter()
    x = fast_sample(model, **kwargs)
    seconds = time.perf_counter() - t0
    with atomic_open(args.out, "wb") as f:
        np.save(f, x.cpu().numpy().transpose(0, 2, 1))  # channels-last, like X.npy
    print(f"{len(x)} windows ({args.method}, {args.steps} steps) in {seconds:.2f} s -> {args.out} (N, L, C)")
    return 0


def cmd_info(args) -> int:
    import platform

    import torch

    import flowfm
    import flowfm_kernels
    from flowfm_kernels.dispatch import registered_ops

    print(f"flowfm {flowfm.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed")
    cuda = torch.cuda.is_available()
    print(f"CUDA GPU: {torch.cuda.get_device_name(0) if cuda else 'none'}")
    for device in (["cpu", "cuda"] if cuda else ["cpu"]):
        print(f"backends on {device}:")
        for backend, reason in flowfm_kernels.available_backends(device).items():
            print(f"  {backend:<7} {'available' if reason is None else 'unavailable: ' + reason}")
    print(f"ops: {', '.join(registered_ops())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowfm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="end-to-end run on HAPT: pretrain, probe vs random init, sample, plot")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a short run (CI): 512 windows, 1 epoch")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    _add_backend(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("pretrain", help="pretrain a model on unlabelled windows")
    p.add_argument("--data", nargs="+", default=["hapt"], help="'hapt' or folders in the X.npy/pid.npy layout")
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="flowfm", choices=["flowfm", "diffusion", "ssl-wearables"],
                   help="flowfm (the method), diffusion (the same networks as a DDPM) or ssl-wearables (multi-task "
                        "self-supervision on the same encoder); all train with the same TrainConfig")
    p.add_argument("--preset", default="small", choices=["small", "harnet10", "tiny"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--grad-clip", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the weights, e.g. 0.999")
    p.add_argument("--encoder-lr-scale", type=float, default=None,
                   help="encoder learning rate = lr * this (default: 0.1 for flowfm/diffusion, which kept the HAPT "
                        "probe highest so far, see README; 1 for ssl-wearables)")
    p.add_argument("--encoder-view", default="augment", choices=["augment", "identical"])
    p.add_argument("--p-uncond", type=float, default=0.1)
    p.add_argument("--sigma-min", type=float, default=0.0)
    p.add_argument("--t-sampling", default="uniform", choices=["uniform", "logit_normal"])
    p.add_argument("--stop-grad-encoder", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument("--no-progress", action="store_true")
    _add_backend(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="subject-wise probe of a frozen encoder")
    p.add_argument("--data", default="hapt")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="model folder (e.g. RUN/model)")
    src.add_argument("--encoder", choices=["random"], help="evaluate the encoder at random init")
    p.add_argument("--preset", default="small", choices=["small", "harnet10", "tiny"])
    p.add_argument("--mode", default="linear", choices=["linear", "mlp", "finetune"])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--loso", action="store_true")
    p.add_argument("--label-subjects", type=int, default=None)
    p.add_argument("--draws", type=int, default=4, help="label-subject draws per fold in the low-label regime")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="generate windows with a trained model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--cond-data", default=None, help="condition on n random windows of this dataset")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--method", default="heun", choices=["euler", "midpoint", "heun", "rk4", "ddpm", "ddim"],
                   help="ODE solver (flowfm) or sampler (diffusion checkpoints: ddpm needs --steps 1000)")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="samples.npy")
    _add_backend(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("info", help="versions, GPU and kernel backends (and why one is unavailable)")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
