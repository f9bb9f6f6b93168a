"""``flowfm evaluate-generation``."""
from __future__ import annotations

import argparse
import sys

from flowfm.argument_types import BATCH, SEED, THREADS, float_in, int_in
from flowfm.cli.common import add_backend, add_overwrite, int_list


def run(args) -> int:
    import torch

    from flowfm.checkpoint import CheckpointError, read_config
    from flowfm.evaluation.generation_sweep import QUICK, generation_sweep, sweep_markdown, sweep_paths, write_sweep
    from flowfm.run_folder import check_new_file

    for path in sweep_paths(args.out).values():
        check_new_file(path, args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = list(args.checkpoint or [])
    try:
        for flag, path, family in (("--flow", args.flow, "flowfm"), ("--diffusion", args.diffusion, "diffusion")):
            if path:
                method = read_config(path).get("method", "flowfm")
                if method != family:
                    raise ValueError(f"{flag} {path} holds a {method!r} model, not a {family!r} one")
                models.append(path)
        if not models:
            raise ValueError("pass --checkpoint DIR (repeatable) or --flow DIR / --diffusion DIR")
        if args.diffusion_clip_x0 is not None:
            from flowfm.checkpoint import load_model

            loaded = []
            for path in models:
                if read_config(path).get("method") == "diffusion":
                    model = load_model(path)
                    model.config.clip_x0 = args.diffusion_clip_x0
                    model.checkpoint_path = f"{path} (clip_x0={args.diffusion_clip_x0:g})"
                    path = model
                loaded.append(path)
            models = loaded
        quick = QUICK if args.quick else {}
        pick = lambda value, key, default: value if value is not None else quick.get(key, default)  # noqa: E731
        result = generation_sweep(models, args.data, n=pick(args.n, "n", 256), nfe=pick(args.nfe, "nfe", None),
                                  ddim=pick(args.ddim, "ddim", None), ddpm=pick(args.ddpm, "ddpm", None),
                                  seed=args.seed, batch_size=args.batch_size, test_fraction=args.test_fraction,
                                  max_test=pick(args.max_test, "max_test", None), device=args.device,
                                  backend=args.backend)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["quick"] = bool(args.quick)
    paths = write_sweep(result, args.out)
    print(sweep_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate-generation",
                       help="generation quality (FFD, discriminative score, TSTR, reconstruction r) and sampling "
                            "time vs NFE for flow and diffusion checkpoints")
    p.add_argument("--checkpoint", action="append", default=None, help="model folder (repeatable)")
    p.add_argument("--flow", default=None, help="FlowFM model folder")
    p.add_argument("--diffusion", default=None, help="diffusion-baseline model folder")
    p.add_argument("--data", default="hapt", help="'hapt' or a labelled folder (X.npy, pid.npy, y.npy)")
    p.add_argument("--n", type=int_in(2, 1_000_000), default=None,
                   help="conditioning windows of training subjects (default 256)")
    p.add_argument("--nfe", type=int_list, default=None, help="flow NFEs (default 1,2,4,8,16,32; heun: NFE/2 steps)")
    p.add_argument("--ddim", type=int_list, default=None, help="DDIM steps (default 10,20,50,100)")
    p.add_argument("--ddpm", action=argparse.BooleanOptionalAction, default=None,
                   help="also run DDPM-1000 (default: on with a diffusion checkpoint)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=BATCH, default=64)
    p.add_argument("--test-fraction", type=float_in(0, 1, lo_open=True, hi_open=True), default=0.3,
                   help="share of subjects held out for TSTR")
    p.add_argument("--max-test", type=int_in(1, 10_000_000), default=None, help="cap on the held-out test windows")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=THREADS, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default="runs/generation_sweep")
    add_overwrite(p, "the sweep files in --out")
    p.add_argument("--quick", action="store_true", help="smoke run: n=32, NFE 1,4, DDIM 10, no DDPM")
    p.add_argument("--diffusion-clip-x0", type=float_in(0, 1000, lo_open=True), default=None,
                   help="clamp the diffusion samplers' x0 estimate to [-C, C] (normalised units; off by default)")
    add_backend(p)
    p.set_defaults(func=run)

