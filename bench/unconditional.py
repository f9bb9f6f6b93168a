"""What condition dropout buys the generator: unconditional and guided sampling with and without it.

    python -m bench.unconditional --runs p_uncond_0.1=runs/compare_hapt/pretrain/flowfm \\
        --runs p_uncond_0=runs/compare_hapt/pretrain/FlowFM-no-cond-dropout --seeds 0,1,2,3,4 \\
        --out bench/results/unconditional_hapt

For each run family (``NAME=FOLDER`` with ``FOLDER/seed_<s>/model``) and seed, on HAPT:

- ``uncond_null``: n windows sampled from the null vector (a model trained with p_uncond = 0 gets its null vector
  fitted first, :func:`flowfm.training.null_fit.fit_null_vector`, 100 steps, seed s);
- ``uncond_bank``: n windows sampled with conditions drawn from the representation bank (1024 training windows,
  :func:`flowfm.training.representation_bank.fill_representation_bank`, seed s);
- ``cond_w1`` / ``cond_w2``: n windows conditioned on E(x_ref) of the reference windows, guidance 1 and 2.

Each is scored against the same n reference windows x_ref (a seeded draw of HAPT windows, shared by every model):
feature Frechet distance (``ffd``), discriminative score (``disc``: |0.5 - accuracy| of a real-vs-generated
classifier) and, for the conditional rows, reconstruction correlation (``recon``). Every setting uses Heun with 8
steps (NFE 16) and the same noise. ``floor`` is the FFD / discriminative score between x_ref and n other real
windows. Writes ``unconditional.json`` and ``unconditional.md``; one torch thread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from flowfm.checkpoint import load_model
from flowfm.data import load_hapt
from flowfm.data.atomic import atomic_write_text
from flowfm.environment import environment
from flowfm.evaluation.generation import discriminative_score, feature_frechet_distance, reconstruction_correlation
from flowfm.sampling import fast_sample
from flowfm.training.null_fit import fit_null_vector, null_fit_needed
from flowfm.training.representation_bank import fill_representation_bank

SETTINGS = ("uncond_null", "uncond_bank", "cond_w1", "cond_w2")
STEPS, METHOD = 8, "heun"


def score(x_ref: np.ndarray, x_gen: np.ndarray, fs: float, paired: bool) -> dict:
    out = {"ffd": feature_frechet_distance(x_ref, x_gen, fs=fs),
           "disc": discriminative_score(x_ref, x_gen, seed=0, fs=fs)}
    if paired:
        out["recon"] = reconstruction_correlation(x_ref, x_gen)["flat"]
    return out


def evaluate_model(model, x_all: np.ndarray, x_ref: np.ndarray, fs: float, seed: int) -> dict:
    """The four settings of one model; fills its bank and, if needed, fits its null vector first."""
    setup = {}
    t0 = time.perf_counter()
    if null_fit_needed(model):
        setup["null_fit"] = fit_null_vector(model, x_all, steps=100, seed=seed)
    fill_representation_bank(model, x_all, seed=seed)
    setup["setup_seconds"] = time.perf_counter() - t0
    ref = torch.from_numpy(x_ref)
    rows = {}
    for setting in SETTINGS:
        gen = torch.Generator().manual_seed(1)
        kwargs = dict(steps=STEPS, method=METHOD, generator=gen)
        if setting.startswith("uncond"):
            kwargs.update(n=len(x_ref), prior=setting.split("_")[1])
        else:
            kwargs.update(x_ref=ref, guidance=float(setting[-1]))
        x_gen = fast_sample(model, **kwargs).numpy()
        rows[setting] = score(x_ref, x_gen, fs, paired=setting.startswith("cond"))
    return {"setup": setup, "settings": rows}


def _mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarise(per_seed: dict) -> dict:
    """{family: {setting: {metric: mean/sd over seeds}}}."""
    out = {}
    for family, seeds in per_seed.items():
        out[family] = {}
        for setting in SETTINGS:
            metrics = seeds[next(iter(seeds))]["settings"][setting]
            out[family][setting] = {m: _mean_sd([seeds[s]["settings"][setting][m] for s in seeds]) for m in metrics}
    return out


def markdown(result: dict) -> str:
    fams = list(result["summary"])
    lines = [f"# Unconditional and guided sampling, HAPT ({result['n']} windows, {METHOD} {STEPS} steps, seeds "
             f"{result['seeds']})", "",
             f"Real-vs-real floor: FFD {result['floor']['ffd']:.2f}, discriminative score "
             f"{result['floor']['disc']:.3f}. Lower is better for both; mean +- SD over seeds.", "",
             "| setting | " + " | ".join(f"{f} FFD | {f} disc | {f} recon" for f in fams) + " |",
             "|---|" + "---|---|---|" * len(fams)]
    for setting in SETTINGS:
        cells = []
        for f in fams:
            row = result["summary"][f][setting]
            cells += [f"{row[m]['mean']:.2f} ± {row[m]['sd']:.2f}" if m == "ffd" else
                      f"{row[m]['mean']:.3f} ± {row[m]['sd']:.3f}" if m in row else "-"
                      for m in ("ffd", "disc", "recon")]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", action="append", required=True, help="NAME=FOLDER (FOLDER/seed_<s>/model)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "unconditional_hapt"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    families = dict(spec.split("=", 1) for spec in args.runs)
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_hapt()
    x_all = np.asarray(ds.x, np.float32)
    perm = np.random.default_rng(0).permutation(len(x_all))
    x_ref, x_other = x_all[perm[:args.n]], x_all[perm[args.n:2 * args.n]]
    t0 = time.perf_counter()
    per_seed = {name: {} for name in families}
    for name, folder in families.items():
        for seed in seeds:
            model = load_model(Path(folder) / f"seed_{seed}" / "model")
            per_seed[name][seed] = evaluate_model(model, x_all, x_ref, ds.fs, seed)
            print(name, seed, {k: {m: round(v, 3) for m, v in r.items()}
                               for k, r in per_seed[name][seed]["settings"].items()}, flush=True)
    result = {"n": args.n, "seeds": seeds, "runs": families, "steps": STEPS, "method": METHOD,
              "floor": score(x_ref, x_other, ds.fs, paired=False), "per_seed": per_seed,
              "summary": summarise(per_seed), "seconds": time.perf_counter() - t0, "environment": environment()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "unconditional.json", json.dumps(result, indent=2, default=str))
    atomic_write_text(out / "unconditional.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
