"""The ``flowfm`` command line: demo, pretrain, evaluate, embed, sample, shard, info (``flowfm <command> --help``)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from flowfm.config import ENCODER_VIEWS, Z_NORMS
from flowfm.encoder import READOUTS


UNIT_CHOICES = ("m/s2", "g", "mg")
UNIT_HELP = ("unit of the data's acceleration: by default it must look like g by magnitude (median |a| ~ 1) and data "
             "that look like m/s^2 or milli-g are refused; m/s2 / mg convert to g (divide by 9.80665 / 1000), g uses "
             "the values as they are")


def _add_unit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unit", default=None, choices=list(UNIT_CHOICES), help=UNIT_HELP)


def _dataset(spec: str, unit: Optional[str] = None):
    from flowfm.data import load_folder, load_hapt

    return load_hapt() if spec == "hapt" else load_folder(spec, unit=unit)


def _declared_fs(spec: str) -> Optional[float]:
    """The sampling rate a dataset states: HAPT's 30 Hz, a folder's meta.json ``fs``; None when unstated."""
    from flowfm.data.folder import read_meta

    if spec == "hapt":
        return 30.0
    fs = read_meta(Path(spec)).get("fs") if Path(spec).is_dir() else None
    return None if fs is None else float(fs)


def _at_model_rate(x, fs: Optional[float], spec, source: str):
    """Windows x (N, C, L) at ``fs`` (None: unknown) resampled to the model's rate (``spec``, a WindowSpec), with a
    note on stderr when their duration then differs from the model's windows."""
    from flowfm.data.window_spec import windows_at_rate

    out = windows_at_rate(x, fs, spec, source)
    if out.shape[-1] != spec.window_length:
        print(f"note: {source} windows are {out.shape[-1] / spec.sample_rate_hz:g} s at {spec.sample_rate_hz:g} Hz; "
              f"the model was trained on {spec.window_seconds:g} s windows", file=sys.stderr)
    return out


def _corpus(args):
    from flowfm.data.corpus import open_corpus

    return open_corpus(args.data, recording_fs=args.recording_fs, unit=args.unit)


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, choices=["auto", "eager", "triton", "cuda"],
                   help="kernel backend (default: $FLOWFM_BACKEND or auto)")


def cmd_demo(args) -> int:
    from flowfm.demo import run_demo

    run_demo(args.out, quick=args.quick, epochs=args.epochs, seed=args.seed, backend=args.backend,
             progress=not args.no_progress)
    return 0


def cmd_pretrain(args) -> int:
    import torch

    from flowfm.baselines import build_model
    from flowfm.training import TrainConfig, distributed, pretrain

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
    }
    if not args.resume:
        for flag, (value, methods) in generator_flags.items():
            if method not in methods and value is not None:
                raise ValueError(f"{flag} applies to --method {' / '.join(methods)} only, not {method}")

    x = _corpus(args)  # one lazily read (N, C, L) corpus over all --data sources, never concatenated in memory
    data_fs = x.fs
    if args.exclude_subjects:
        x = x.without_subjects(s.strip() for s in args.exclude_subjects.split(",") if s.strip())
    ctx, device = distributed.setup(args.device)  # under torchrun: join the process group (else a no-op)
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
                              for flag, (value, methods) in generator_flags.items() if value is not None})
        # mean/std from at most NORMALIZER_WINDOWS seeded windows, read chunk by chunk (all of a small corpus)
        model = build_model(method, config_kwargs, backend=args.backend).fit_normalizer(x.subsample(seed=args.seed))
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
                                                            "exclude_subjects": args.exclude_subjects}, indent=2))
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
    return 0


def cmd_evaluate(args) -> int:
    import torch

    from flowfm.data.atomic import atomic_write_text
    from flowfm.evaluation import FitConfig, encoder_model, evaluate_encoder, report_markdown

    if args.threads:
        torch.set_num_threads(args.threads)
    mode = args.mode or ("scratch" if args.encoder == "scratch" else "linear")
    if args.encoder == "scratch" and mode not in ("finetune", "scratch"):
        raise ValueError("--encoder scratch trains the preset's encoder from a random init (supervised from "
                         "scratch) and needs --mode finetune; a frozen random encoder is --encoder random")
    if args.encoder == "scratch":
        mode = "scratch"
    if args.encoder == "random" and mode == "finetune":
        raise ValueError("--encoder random is the frozen random-init encoder (--mode linear or mlp); finetuning "
                         "from a random init is --encoder scratch")
    if not (args.checkpoint or args.encoder):
        raise ValueError("pass --checkpoint DIR (a model folder of any method) or --encoder random / scratch")
    ds = _dataset(args.data, args.unit).labelled()
    model, name = encoder_model(args.checkpoint or args.encoder, preset=args.preset, in_channels=ds.x.shape[1],
                                window=ds.x.shape[2], base_seed=args.seed)
    from flowfm.data.window_spec import WindowSpec

    spec = getattr(model, "data_spec", None) or WindowSpec.default(ds.x.shape[1], ds.x.shape[2])
    x = _at_model_rate(ds.x, _declared_fs(args.data), spec, args.data)
    config = FitConfig(max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size,
                       val_fraction=args.val_fraction)
    report = evaluate_encoder(model, x, ds.y, ds.pid, mode, seeds=args.seeds, n_folds=args.folds,
                              loso=args.loso, label_subjects=args.label_subjects, draws=args.draws, config=config,
                              name=name, data=args.data, progress=None if args.quiet else print,
                              readout=args.readout)
    print(f"{name} ({mode}): macro-F1 {report['macro_f1_mean']:.3f} +- {report['macro_f1_sd']:.3f}, kappa "
          f"{report['kappa_mean']:.3f} ({report['folds']} subject-wise folds, label subjects "
          f"{args.label_subjects or 'all'}, {args.seeds} seed(s), {report['seconds']:.0f} s)")
    if args.out:
        out = Path(args.out)
        atomic_write_text(out, json.dumps(report, indent=2))
        atomic_write_text(out.with_suffix(".md"), report_markdown(report))
        print(f"wrote {out} and {out.with_suffix('.md')}")
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
        ds = _dataset(args.cond_data, args.unit)
        idx = np.random.default_rng(args.seed).choice(len(ds), size=min(args.n, len(ds)), replace=False)
        x_ref = _at_model_rate(ds.x[np.sort(idx)], _declared_fs(args.cond_data), model.data_spec, args.cond_data)
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


def cmd_shard(args) -> int:
    from flowfm.data.corpus import expand_paths
    from flowfm.data.shards import write_shards

    t0 = time.perf_counter()
    try:
        report = write_shards(expand_paths(args.recordings), args.fs, args.out, args.windows_per_shard,
                              unit=args.unit)
    except (FileExistsError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in report.skipped:
        print(f"skipped {path}: shorter than one 10 s window")
    print(f"{report.n_windows} windows in {len(report.shards)} shard(s) -> {args.out} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _embed_sources(specs, fs: Optional[float], unit: Optional[str], spec):
    """Yield (name, windows (n, C, L) at the model's rate in g, pid (n,), start_time (n,) or None, y or None) for
    each ``flowfm embed --data`` spec: 'hapt', a window folder, or a continuous .npy/.csv recording."""
    import numpy as np

    from flowfm.data.corpus import expand_paths
    from flowfm.data.recording import RECORDING_SUFFIXES, inspect_recording, recording_unit, recording_windows

    for path in expand_paths(specs):
        name = str(path)
        if name == "hapt" or path.is_dir():
            ds = _dataset(name, unit)
            x = _at_model_rate(ds.x, fs if fs is not None else _declared_fs(name), spec, name)
            times = None
            if path.is_dir() and (path / "time.npy").is_file():
                times = np.load(path / "time.npy", allow_pickle=False)
                if times.shape != (len(ds),):
                    raise ValueError(f"{path / 'time.npy'} has shape {times.shape}; expected ({len(ds)},), one "
                                     "start time per window")
            yield name, x, np.asarray(ds.pid), times, ds.y
        elif path.suffix.lower() in RECORDING_SUFFIXES and path.is_file():
            if fs is None:
                raise ValueError(f"{path} is a continuous recording: state its sampling rate with --fs HZ")
            info = inspect_recording(path)
            if info.n_channels != len(spec.channels):
                raise ValueError(f"{path} has {info.n_channels} columns; the model expects {len(spec.channels)} "
                                 f"channels ({', '.join(spec.channels)}) in g")
            per_g = recording_unit(path, unit)
            blocks = list(recording_windows(path, fs, fs_out=spec.sample_rate_hz, window_s=spec.window_seconds,
                                            hop_s=spec.hop_seconds, info=info))
            if not blocks:
                raise ValueError(f"recording {path} lasts {info.n_rows / fs:.1f} s, shorter than one "
                                 f"{spec.window_seconds:g} s window")
            x = np.concatenate(blocks) / np.float32(per_g)
            yield name, x, np.full(len(x), path.stem), np.arange(len(x)) * spec.hop_seconds, None
        elif not path.exists():
            raise FileNotFoundError(f"{path} does not exist (expected 'hapt', a folder with X.npy and pid.npy, or a "
                                    ".npy/.csv recording)")
        else:
            raise ValueError(f"{path}: expected a folder with X.npy or a .npy/.csv recording, got a "
                             f"'{path.suffix}' file")


def cmd_embed(args) -> int:
    import numpy as np

    from flowfm.checkpoint import CheckpointError, load_model
    from flowfm.data.atomic import atomic_open

    try:
        model = load_model(args.checkpoint, map_location=args.device)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spec = model.data_spec
    t0 = time.perf_counter()
    z, pid, index, times, labels = [], [], [], [], []
    for name, x, p, t, y in _embed_sources(args.data, args.fs, args.unit, spec):
        # the unit was checked (and converted) by the reader: embed takes the windows as g
        z.append(model.embed(x, batch_size=args.batch_size, unit="g").numpy())
        pid.append(p)
        index.append(np.arange(len(x), dtype=np.int64))
        times.append(t)
        labels.append(y)
    out = {"z": np.concatenate(z).astype(np.float32), "window_index": np.concatenate(index)}
    kinds = {p.dtype.kind for p in pid}
    out["pid"] = np.concatenate(pid if len(kinds) == 1 and "O" not in kinds else [p.astype(str) for p in pid])
    if all(t is not None for t in times):
        try:
            out["start_time"] = np.concatenate(times)
        except (TypeError, ValueError):
            pass
    if all(y is not None for y in labels) and len({y.dtype.kind for y in labels}) == 1:
        out["y"] = np.concatenate(labels)
    out["sample_rate_hz"] = np.float64(spec.sample_rate_hz)
    out["window_length"] = np.int64(spec.window_length)
    with atomic_open(args.out, "wb") as f:
        np.savez(f, **out)
    keys = ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items() if np.ndim(v))
    print(f"{len(out['z'])} windows embedded ({model.method}, z of dim {out['z'].shape[1]}) in "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}: {keys}. z is small in scale: standardise it (e.g. "
          "sklearn StandardScaler fit on training windows) before a linear classifier")
    return 0


def resolution_lines(device) -> list[str]:
    """``flowfm info``'s table of what each backend request runs per op on ``device``, then the reasons (each
    distinct reason once, with the ops it applies to)."""
    from flowfm_kernels import dispatch

    requests = ("auto",) + dispatch.BACKENDS
    ops = dispatch.registered_ops()
    found = {(r.op, r.request): r for r in dispatch.explain_all(device)}
    width = max(len(op) for op in ops) + 2
    lines = [f"op resolution on {device} (what each request runs; '-' = raises):",
             "  " + "op".ljust(width) + "".join(q.ljust(8) for q in requests) + "auto order on CUDA"]
    for op in ops:
        cells = "".join((found[op, q].backend or "-").ljust(8) for q in requests)
        lines.append("  " + op.ljust(width) + cells + " > ".join(dispatch.cuda_preference(op)))
    reasons: dict[tuple[str, str], list[str]] = {}
    for op in ops:
        for q in requests:
            r = found[op, q]
            if r.reason != "requested":
                reasons.setdefault((q, r.reason), []).append(op)
    for (q, reason), which in reasons.items():
        scope = "all ops" if len(which) == len(ops) else ", ".join(which)
        lines.append(f"  {q} ({scope}): {reason}")
    for op in ops:
        for backend, note in dispatch.implementation_notes(op).items():
            lines.append(f"  {op} under {backend}: {note}")
    return lines


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
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    for device in devices:
        print(f"backends on {device}:")
        for backend, reason in flowfm_kernels.available_backends(device).items():
            print(f"  {backend:<7} {'available' if reason is None else 'unavailable: ' + reason}")
    print(f"ops: {', '.join(registered_ops())}")
    for device in devices:
        print("\n".join(resolution_lines(device)))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_evaluate_generation(args) -> int:
    import torch

    from flowfm.checkpoint import CheckpointError, read_config
    from flowfm.evaluation.generation_sweep import QUICK, generation_sweep, sweep_markdown, write_sweep

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


BENCH_SUITES = ("kernels", "sampling", "training", "render")


def bench_module(suite: str, checkout: Optional[Path] = None):
    """``bench.<suite>``, importing from the source checkout holding this package when ``bench`` is not on the
    path; ModuleNotFoundError with instructions when there is none (an installed wheel does not ship bench/)."""
    import importlib

    name = f"bench.{suite}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", name):
            raise
    root = checkout or Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__init__.py").is_file():
        raise ModuleNotFoundError(f"the benchmark suites live in the bench/ folder of a FlowFM source checkout, "
                                  f"which is not importable here (an installed wheel does not ship it); clone the "
                                  f"repository and run `flowfm bench {suite}` or `python -m {name}` from its root")
    sys.path.insert(0, str(root))
    return importlib.import_module(name)


def cmd_bench(args) -> int:
    try:
        module = bench_module(args.suite)
    except ModuleNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module.main(list(args.args))
    return 0


def _regimes(text: str) -> tuple:
    """"all,1,3,5" -> (None, 1, 3, 5): label regimes, None = all labels."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise ValueError(f"label regimes are 'all' or positive integers separated by commas, got {part!r}")
    return tuple(out)


def cmd_compare(args) -> int:
    import torch

    from flowfm.compare import CompareConfig, run_compare

    if args.threads:
        torch.set_num_threads(args.threads)
    fields = dict(data=args.data, out=args.out)
    for name in ("seeds", "epochs", "draws", "finetune_draws", "folds", "preset"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.methods:
        fields["methods"] = tuple(args.methods.split(","))
    if args.modes:
        fields["modes"] = tuple(args.modes.split(","))
    if args.label_subjects:
        fields["label_subjects"] = _regimes(args.label_subjects)
    if args.finetune_label_subjects:
        fields["finetune_label_subjects"] = _regimes(args.finetune_label_subjects)
    fields["evaluate_only"] = args.evaluate_only
    fields["readout"] = args.readout
    fields["inductive"] = args.inductive
    fields["time_to_quality"] = not args.skip_time_to_quality
    if args.ttq_epochs:
        fields["ttq_epochs"] = tuple(_int_list(args.ttq_epochs))
    if args.variant:
        import shlex

        variants = {}
        for spec in args.variant:
            name, sep, extra = spec.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"--variant takes NAME='PRETRAIN ARGS', got {spec!r}")
            variants[name.strip()] = shlex.split(extra)
        fields["variants"] = variants
    cfg = CompareConfig.quick_config(**fields) if args.quick else CompareConfig(**fields)
    run_compare(cfg)
    return 0


def cmd_convert(args) -> int:
    from flowfm.data.converters import CONVERTERS, convert

    if args.list:
        for name, conv in CONVERTERS.items():
            print(f"{name:<12} {conv.description}")
        return 0
    if not (args.name and args.raw_dir and args.out_dir):
        print("error: usage: flowfm convert NAME RAW_DIR OUT_DIR (flowfm convert --list for the names)",
              file=sys.stderr)
        return 2
    try:
        summary = convert(args.name, args.raw_dir, args.out_dir, keep_unlabelled=args.keep_unlabelled,
                          overwrite=args.overwrite)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
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
    p.add_argument("--data", nargs="+", default=["hapt"],
                   help="'hapt', folders in the X.npy layout, folders of shard folders, a quoted glob of them "
                        "('corpus/shard_*'), or continuous (T, C) .npy/.csv recordings in g (needs --recording-fs); "
                        "shards are memory-mapped and read batch by batch")
    p.add_argument("--recording-fs", type=float, default=None,
                   help="sampling rate in Hz of the .npy/.csv recordings in --data (resampled to 30 Hz, 10 s windows "
                        "every 5 s)")
    _add_unit(p)
    p.add_argument("--exclude-subjects", default=None, metavar="IDS",
                   help="comma list of subject ids whose windows pretraining never sees (e.g. a fold's test "
                        "subjects, for inductive evaluation; needs subject ids: HAPT, shards with pid.npy)")
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
    p.add_argument("--keep-checkpoints", type=int, default=2,
                   help="epoch checkpoints kept on disk (0 = all, e.g. for probing quality over training time)")
    p.add_argument("--encoder-lr-scale", type=float, default=None,
                   help="encoder learning rate = lr * this (default: 0.1 for flowfm/diffusion, which kept the HAPT "
                        "probe highest so far, see README; 1 for ssl-wearables)")
    p.add_argument("--encoder-view", default=None, choices=list(ENCODER_VIEWS),
                   help="what the encoder sees (default: the config's, augment); the shift views re-cut each "
                        "window from its overlapping neighbours (windows in recording order, hop = L/2)")
    p.add_argument("--view-max-shift", type=int, default=None,
                   help="shift views: largest time shift in samples (default 150 = 5 s at 30 Hz)")
    p.add_argument("--p-uncond", type=float, default=None,
                   help="condition dropout (default 0: it cost the HAPT encoder, see README; 0.1 trains a null "
                        "vector with the network, for guidance)")
    p.add_argument("--null-fit-steps", type=int, default=100,
                   help="flowfm/diffusion with --p-uncond 0: Adam steps that fit the null vector after training, "
                        "the weights frozen, so guidance works (0 skips)")
    p.add_argument("--z-bank-size", type=int, default=1024,
                   help="flowfm/diffusion: representations of training windows stored with the model, the prior "
                        "of unconditional sampling (0 skips)")
    p.add_argument("--sigma-min", type=float, default=None, help="flowfm: minimum path noise (default 0)")
    p.add_argument("--t-sampling", default=None, choices=["uniform", "logit_normal"],
                   help="flowfm: training-time distribution (default logit_normal, see README)")
    p.add_argument("--logit-normal-mean", type=float, default=None,
                   help="flowfm, logit_normal: t = sigmoid(N(mean, 1)); default 1.0 favours the data end (t = 1), "
                        "where the generator needs z least")
    p.add_argument("--time-embedding-scale", type=float, default=None,
                   help="flowfm: the velocity network embeds sinusoidal(a t); default a = 1 (1000, the DDPM "
                        "convention, makes the field oscillate in t faster than few-step solvers resolve)")
    p.add_argument("--z-norm", default=None, choices=list(Z_NORMS),
                   help="flowfm/diffusion: how the generator reads z: layer (default; LayerNorm without affine) or "
                        "none (the plain projection; see README, Design variants)")
    p.add_argument("--z-rank", type=int, default=None,
                   help="flowfm/diffusion: the generator sees z through a rank-r linear bottleneck (default: full "
                        "Linear(D, cond_dim); see README, Design variants)")
    p.add_argument("--stop-grad-encoder", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument("--no-progress", action="store_true")
    _add_backend(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="subject-wise evaluation of an encoder: linear probe, MLP head on frozen "
                                        "features, or fine-tuning (SPEC section 5)")
    p.add_argument("--data", default="hapt")
    _add_unit(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="model folder of any method (flowfm, diffusion, ssl-wearables), e.g. "
                                          "RUN/model")
    src.add_argument("--encoder", choices=["random", "scratch"],
                     help="random: the --preset encoder at a random init, frozen (re-drawn per seed); scratch: "
                          "the same architecture trained from a random init (supervised baseline, mode finetune)")
    p.add_argument("--preset", default="small", choices=["small", "harnet10", "tiny"])
    p.add_argument("--mode", default=None, choices=["linear", "mlp", "finetune"],
                   help="linear: logistic regression on frozen z; mlp: 2-layer head on frozen z; finetune: encoder "
                        "+ head, all weights (default: linear, or finetune with --encoder scratch)")
    p.add_argument("--readout", default="z", choices=list(READOUTS),
                   help="frozen features of --mode linear / mlp: z (the encoder's final pooled output) or stages "
                        "(the pooled outputs of every encoder stage, concatenated)")
    p.add_argument("--folds", type=int, default=5, help="GroupKFold over subjects")
    p.add_argument("--loso", action="store_true", help="leave one subject out instead of --folds")
    p.add_argument("--label-subjects", type=int, default=None,
                   help="low-label regime: labels of only k training subjects per fold (default: all)")
    p.add_argument("--draws", type=int, default=4, help="label-subject draws per fold in the low-label regime")
    p.add_argument("--seeds", type=int, default=1, help="evaluation seeds 0..N-1 (same folds/draws for every model)")
    p.add_argument("--seed", type=int, default=0, help="random-init seed offset for --encoder random / scratch")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the labelled training subjects held out for early stopping (mlp/finetune)")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=5, help="epochs without a better validation macro-F1")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quiet", action="store_true", help="no per-seed progress lines")
    p.add_argument("--out", default=None, help="write the JSON report here (and a markdown table beside it, .md)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="generate windows with a trained model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--cond-data", default=None, help="condition on n random windows of this dataset")
    _add_unit(p)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--method", default="heun", choices=["euler", "midpoint", "heun", "rk4", "ddpm", "ddim"],
                   help="ODE solver (flowfm) or sampler (diffusion checkpoints: ddpm needs --steps 1000)")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--prior", default="auto", choices=["auto", "bank", "null"],
                   help="unconditional sampling: conditions drawn from the representation bank, or the null vector "
                        "(auto: the bank when the model has one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="samples.npy")
    _add_backend(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("embed", help="representations z of every window of datasets or recordings -> .npz (z, pid, "
                                     "window_index, start_time when known, y when labelled)")
    p.add_argument("--checkpoint", required=True, help="model folder of any method, e.g. RUN/model")
    p.add_argument("--data", nargs="+", required=True,
                   help="'hapt', folders in the X.npy/pid.npy layout (an optional time.npy gives start times), or "
                        "continuous (T, C) .npy/.csv recordings (need --fs; windows at the model's rate, length and "
                        "hop; start_time in seconds from the recording's start)")
    p.add_argument("--fs", type=float, default=None,
                   help="sampling rate of the data in Hz (recordings: required; folders: overrides meta.json); data "
                        "at another rate than the model's are resampled to it (polyphase)")
    _add_unit(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="the .npz file to write (atomically)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("shard", help="cut continuous recordings into 30 Hz windows written as shard folders "
                                     "(OUT/shard_00000/X.npy ...) for flowfm pretrain --data OUT")
    p.add_argument("recordings", nargs="+", help=".npy or .csv files of shape (T, C) in g (or a quoted glob)")
    p.add_argument("--fs", type=float, required=True, help="sampling rate of the recordings in Hz")
    _add_unit(p)
    p.add_argument("--out", required=True, help="output folder (must not hold shard_* folders yet)")
    p.add_argument("--windows-per-shard", type=int, default=20_000,
                   help="windows per shard folder (20,000 x 3 x 300 float32 = 72 MB, the memory bound)")
    p.set_defaults(func=cmd_shard)

    p = sub.add_parser("info", help="versions, GPU and kernel backends (and why one is unavailable)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert a public dataset from its original raw files to a window folder "
                                       "(30 Hz, 10 s, g; --list shows the datasets)")
    p.add_argument("name", nargs="?", help="dataset: pamap2, wisdm, opportunity, realworld, adl, capture24")
    p.add_argument("raw_dir", nargs="?", help="folder holding the dataset's original files (searched recursively)")
    p.add_argument("out_dir", nargs="?", help="output folder: X.npy (N, 300, 3) in g, Y.npy, pid.npy, meta.json")
    p.add_argument("--list", action="store_true", help="list the converters with a one-line description")
    p.add_argument("--keep-unlabelled", action="store_true",
                   help="keep windows without a valid label (label -1), e.g. for pretraining")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists and is not empty")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("compare", help="the whole comparison: pretrain FlowFM, diffusion and SSL-Wearables for every "
                                       "seed, evaluate them with random-init and from-scratch rows, paired "
                                       "differences, time to quality; resumable")
    p.add_argument("--data", default="hapt", help="'hapt' or a folder in the X.npy/Y.npy/pid.npy layout")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--methods", default=None, help="comma list (default flowfm,diffusion,ssl-wearables)")
    p.add_argument("--seeds", type=int, default=None, help="pretraining = evaluation seeds (default 5)")
    p.add_argument("--epochs", type=int, default=None, help="pretraining epochs of every method (default 12)")
    p.add_argument("--preset", default=None, choices=["small", "harnet10", "tiny"])
    p.add_argument("--modes", default=None, help="comma list of linear,mlp,finetune (default linear)")
    p.add_argument("--readout", default="z", choices=list(READOUTS),
                   help="frozen features of modes linear / mlp: z or stages (pooled outputs of every encoder "
                        "stage; cached under OUT/eval/<mode>_stages/, finetune unaffected)")
    p.add_argument("--label-subjects", default=None, help="label regimes, e.g. all,1,3,5 (the default)")
    p.add_argument("--finetune-label-subjects", default=None,
                   help="label regimes of the finetune mode if different (it costs ~100x a linear probe)")
    p.add_argument("--draws", type=int, default=None, help="label-subject draws per fold in the low-label regimes")
    p.add_argument("--finetune-draws", type=int, default=None, help="draws of the finetune mode if different")
    p.add_argument("--folds", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="CI size: 2 seeds, 1 epoch, 512 windows, 3 folds")
    p.add_argument("--ttq-epochs", default=None, help="epochs probed for time to quality, e.g. 2,4,6,8,10,12 "
                                                      "(default: every epoch)")
    p.add_argument("--skip-time-to-quality", action="store_true", help="no per-epoch probe curves")
    p.add_argument("--variant", action="append", default=None,
                   help="an extra pretrained row: NAME='--method flowfm --t-sampling uniform' (repeatable)")
    p.add_argument("--inductive", action="store_true",
                   help="pretrain one model per fold and seed without that fold's test subjects (costs --folds "
                        "times the pretraining; use a fresh --out)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="never pretrain (error if a model is missing): lets several invocations with disjoint "
                        "--modes share OUT safely")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate-generation",
                       help="generation quality (FFD, discriminative score, TSTR, reconstruction r) and sampling "
                            "time vs NFE for flow and diffusion checkpoints")
    p.add_argument("--checkpoint", action="append", default=None, help="model folder (repeatable)")
    p.add_argument("--flow", default=None, help="FlowFM model folder")
    p.add_argument("--diffusion", default=None, help="diffusion-baseline model folder")
    p.add_argument("--data", default="hapt", help="'hapt' or a labelled folder (X.npy, pid.npy, y.npy)")
    p.add_argument("--n", type=int, default=None, help="conditioning windows of training subjects (default 256)")
    p.add_argument("--nfe", type=_int_list, default=None, help="flow NFEs (default 1,2,4,8,16,32; heun: NFE/2 steps)")
    p.add_argument("--ddim", type=_int_list, default=None, help="DDIM steps (default 10,20,50,100)")
    p.add_argument("--ddpm", action=argparse.BooleanOptionalAction, default=None,
                   help="also run DDPM-1000 (default: on with a diffusion checkpoint)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--test-fraction", type=float, default=0.3, help="share of subjects held out for TSTR")
    p.add_argument("--max-test", type=int, default=None, help="cap on the held-out test windows")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default="runs/generation_sweep")
    p.add_argument("--quick", action="store_true", help="smoke run: n=32, NFE 1,4, DDIM 10, no DDPM")
    p.add_argument("--diffusion-clip-x0", type=float, default=None,
                   help="clamp the diffusion samplers' x0 estimate to [-C, C] (normalised units; off by default)")
    _add_backend(p)
    p.set_defaults(func=cmd_evaluate_generation)

    p = sub.add_parser("bench", help="run a benchmark suite from a source checkout (= python -m bench.NAME)")
    p.add_argument("suite", choices=BENCH_SUITES)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the suite (flowfm bench NAME --help)")
    p.set_defaults(func=cmd_bench)
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
