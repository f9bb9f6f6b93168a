"""``flowfm sample``."""
from __future__ import annotations

import time

from flowfm.argument_types import SEED, float_in, int_in
from flowfm.cli.common import add_backend, add_overwrite, add_unit, at_model_rate, declared_fs, load_dataset


def run(args) -> int:
    import numpy as np
    import torch

    from flowfm.data.atomic import atomic_open
    from flowfm.model import FlowFM
    from flowfm.run_folder import check_new_file
    from flowfm.sampling import fast_sample

    check_new_file(args.out, args.overwrite)
    model = FlowFM.load(args.checkpoint, map_location=args.device, backend=args.backend)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    kwargs = dict(steps=args.steps, method=args.method, guidance=args.guidance, generator=generator)
    if args.cond_data:
        ds = load_dataset(args.cond_data, args.unit)
        idx = np.random.default_rng(args.seed).choice(len(ds), size=min(args.n, len(ds)), replace=False)
        x_ref = at_model_rate(ds.x[np.sort(idx)], declared_fs(args.cond_data), model.data_spec, args.cond_data)
        kwargs["x_ref"] = torch.from_numpy(np.ascontiguousarray(x_ref, dtype=np.float32)).to(args.device)
    else:
        kwargs.update(n=args.n, prior=args.prior)
    t0 = time.perf_counter()
    x = fast_sample(model, **kwargs)
    seconds = time.perf_counter() - t0
    with atomic_open(args.out, "wb") as f:
        np.save(f, x.cpu().numpy().transpose(0, 2, 1))  # channels-last, like X.npy
    print(f"{len(x)} windows ({args.method}, {args.steps} steps) in {seconds:.2f} s -> {args.out} (N, L, C)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate windows with a trained model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int_in(1, 1_000_000), default=16)
    p.add_argument("--cond-data", default=None, help="condition on n random windows of this dataset")
    add_unit(p)
    p.add_argument("--steps", type=int_in(1, 10_000), default=10)
    p.add_argument("--method", default="heun", choices=["euler", "midpoint", "heun", "rk4", "ddpm", "ddim"],
                   help="ODE solver (flowfm) or sampler (diffusion checkpoints: ddpm needs --steps 1000)")
    p.add_argument("--guidance", type=float_in(-1000, 1000), default=1.0)
    p.add_argument("--prior", default="auto", choices=["auto", "bank", "null"],
                   help="unconditional sampling: conditions drawn from the representation bank, or the null vector "
                        "(auto: the bank when the model has one)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="samples.npy",
                   help="the .npy to write: (N, L, C) channels-last in g, the X.npy layout (flowfm.fast_sample "
                        "returns (N, C, L) tensors; transpose(0, 2, 1) converts)")
    add_overwrite(p, "the --out file")
    add_backend(p)
    p.set_defaults(func=run)

