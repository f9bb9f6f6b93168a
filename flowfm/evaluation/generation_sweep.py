"""Generation quality as a function of NFE and sampling time (docs/design.md §5, §7): one function, a table, a plot.

    from flowfm.evaluation.generation_sweep import generation_sweep, write_sweep
    result = generation_sweep(["runs/flow/model", "runs/diff/model"], "hapt", n=256, seed=0)
    write_sweep(result, "runs/generation_sweep")   # generation_sweep.json / .md / _quality_vs_time.png

Settings. A flow model runs every ODE solver of ``flow_methods`` at every NFE of ``nfe``; NFE is counted by
:func:`flowfm.solvers.nfe` (velocity evaluations = batched network calls): Euler 1 per step, Heun 2 per step (its
corrector runs on every step, including the last), so Heun at NFE n takes n / 2 steps and an odd NFE is skipped
(listed in ``skipped`` with the reason). A diffusion model runs DDIM (eta = 0) with S steps = NFE S for each S of
``ddim`` and, with ``ddpm``, ancestral DDPM over all T steps (NFE T = 1000).

Conditioning and split (subject-wise, seeded). The labelled windows are split by subject: a seeded draw of
``round(test_fraction * S)`` of the S subjects is the TEST set, the others TRAIN. ``n`` conditioning windows
x_ref (n, C, L) with labels y_ref are drawn without replacement from the TRAIN windows. Every setting of every model
generates x_gen[i] from z_i = E(x_ref[i]) with the same noise: batch k (``batch_size`` windows) draws its x0 from a
generator seeded by (seed, k). Per setting:

- ``frechet``: feature Frechet distance FFD(x_ref, x_gen) on the hand-crafted features (x_ref standardises);
- ``discriminative_score``: |0.5 - held-out accuracy| of a real-vs-synthetic classifier (pairs kept together);
- ``tstr_macro_f1``: logistic regression trained on (x_gen, y_ref), tested on the real TEST-subject windows;
- ``reconstruction_corr``: mean over windows of Pearson r(flatten x_ref[i], flatten x_gen[i]);
- ``seconds``: wall time of the sampling calls for all n windows (z precomputed: the encoder runs once per model,
  ``encode_seconds``; on CUDA the first batch is run once untimed first, so graph capture is not counted),
  ``windows_per_s = n / seconds``; ``speedup_vs_ddpm = seconds(DDPM-1000) / seconds`` of the same model family run.

Reference rows, computed once: TRTR (the same classifier trained on (x_ref, y_ref)) and real-vs-real FFD /
discriminative score between x_ref and n windows of the TEST subjects (the floor an ideal generator would reach
against people it never saw).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from flowfm.data.atomic import atomic_write_text
from flowfm.environment import environment
from flowfm.plots import save_figure
from flowfm.evaluation.generation import (discriminative_score, feature_frechet_distance, generation_report,
                                          trtr_macro_f1)
from flowfm.solvers import nfe as flow_nfe

DEFAULT_NFE = (1, 2, 4, 8, 16, 32)
DEFAULT_FLOW_METHODS = ("euler", "heun")
DEFAULT_DDIM = (10, 20, 50, 100)
# --quick: a smoke run of the whole pipeline (a few minutes at most on a 2-core CPU with small-preset models)
QUICK = dict(n=32, nfe=(1, 4), ddim=(10,), ddpm=False, max_test=256)
SCHEMA_VERSION = 1
GENERATIVE = ("flowfm", "diffusion")


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Setting:
    """One sampler configuration: ``family`` ("flowfm" | "diffusion"), ``method`` (euler, heun, ddim, ddpm, ...),
    ``steps`` (solver steps / DDIM steps / T) and ``nfe`` (network evaluations per sample)."""

    family: str
    method: str
    steps: int
    nfe: int

    @property
    def name(self) -> str:
        return f"{self.method}-{self.steps}"


def flow_settings(nfe_values: Iterable[int], methods: Sequence[str] = DEFAULT_FLOW_METHODS
                  ) -> tuple[list[Setting], list[dict]]:
    """(settings, skipped): for each method and target NFE n, steps = n / NFE-per-step when that is a whole
    number >= 1 (Heun: NFE 2 per step), else a ``skipped`` entry with the reason."""
    settings, skipped = [], []
    for method in methods:
        per_step = flow_nfe(method, 1)
        for n in nfe_values:
            n = _positive_int(n, "NFE")
            if n % per_step:
                skipped.append(dict(model="flowfm", setting=f"{method} at NFE {n}",
                                    reason=f"{method} costs {per_step} evaluations per step; NFE {n} is not a "
                                           f"multiple of {per_step}"))
                continue
            settings.append(Setting("flowfm", method, n // per_step, n))
    return settings, skipped


def diffusion_settings(model, ddim: Iterable[int] = DEFAULT_DDIM, ddpm: bool = True) -> list[Setting]:
    """DDIM at each step count of ``ddim`` (NFE = steps), then DDPM over all T steps (NFE = T) when ``ddpm``."""
    T = model.config.T
    out = []
    for s in ddim:
        s = _positive_int(s, "DDIM steps")
        if s > T:
            raise ValueError(f"DDIM steps must be <= T={T}, got {s}")
        out.append(Setting("diffusion", "ddim", s, model.nfe("ddim", s)))
    if ddpm:
        out.append(Setting("diffusion", "ddpm", T, model.nfe("ddpm", T)))
    return out


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------- conditioning set
@dataclass
class ConditioningSet:
    """x (n, C, L) / y (n,) / pid (n,): conditioning windows of TRAIN subjects; test_x (m, C, L) / test_y (m,):
    labelled windows of the TEST subjects; ``index``: positions of x in the labelled dataset."""

    x: np.ndarray
    y: np.ndarray
    pid: np.ndarray
    index: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    train_subjects: list
    test_subjects: list
    fs: float
    n_requested: int

    @property
    def sha256(self) -> str:
        """Hash of the conditioning windows' bytes: equal for every setting that used the same windows."""
        return hashlib.sha256(np.ascontiguousarray(self.x, dtype=np.float32).tobytes()).hexdigest()

    def describe(self) -> dict:
        labels, counts = np.unique(self.y, return_counts=True)
        return dict(n=int(len(self.x)), n_requested=self.n_requested, n_test=int(len(self.test_x)),
                    train_subjects=[_plain(s) for s in self.train_subjects],
                    test_subjects=[_plain(s) for s in self.test_subjects],
                    label_counts={str(_plain(k)): int(v) for k, v in zip(labels, counts)},
                    sha256=self.sha256, fs=self.fs)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _json_default(v):
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    return str(v)


def load_data(data):
    """A :class:`~flowfm.data.WindowDataset`, or ``"hapt"``, or a folder in the X.npy / pid.npy / y.npy layout."""
    if not isinstance(data, (str, os.PathLike)):
        return data
    from flowfm.data import load_folder, load_hapt

    return load_hapt() if str(data) == "hapt" else load_folder(data, require_labels=True)


def conditioning_split(data, n: int = 256, seed: int = 0, test_fraction: float = 0.3,
                       max_test: Optional[int] = None) -> ConditioningSet:
    """Subject-wise split of the labelled windows of ``data`` and a seeded draw of ``n`` conditioning windows from
    the TRAIN subjects (capped at their number); ``max_test`` caps the TEST windows (seeded draw)."""
    ds = load_data(data).labelled()
    n = _positive_int(n, "n")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    subjects = np.unique(ds.pid)
    if len(subjects) < 2:
        raise ValueError(f"a subject-wise split needs at least 2 labelled subjects, found {len(subjects)}")
    rng = np.random.default_rng(seed)
    n_test = min(len(subjects) - 1, max(1, round(test_fraction * len(subjects))))
    test_subj = np.sort(rng.permutation(subjects)[:n_test])
    is_test = np.isin(ds.pid, test_subj)
    train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    idx = np.sort(rng.choice(train_idx, size=min(n, len(train_idx)), replace=False))
    if max_test is not None and len(test_idx) > max_test:
        test_idx = np.sort(rng.choice(test_idx, size=_positive_int(max_test, "max_test"), replace=False))
    return ConditioningSet(x=np.asarray(ds.x[idx], np.float32), y=ds.y[idx], pid=ds.pid[idx], index=idx,
                           test_x=np.asarray(ds.x[test_idx], np.float32), test_y=ds.y[test_idx],
                           train_subjects=list(np.setdiff1d(subjects, test_subj)), test_subjects=list(test_subj),
                           fs=ds.fs, n_requested=n)


# ------------------------------------------------------------------------------------------------------ sampling
def batch_seed(seed: int, k: int) -> int:
    """Seed of batch k's noise generator: a function of (seed, k) only, so every setting sees the same x0."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def encode(model, x: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """z = E(x) (n, D) on the model's device, batch by batch, inference mode."""
    device = model.null_z.device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return torch.cat([model.encode(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device))
                              for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def sample_setting(model, z: torch.Tensor, setting: Setting, seed: int = 0, batch_size: int = 64,
                   backend: Optional[str] = None) -> tuple[np.ndarray, float, list[int]]:
    """Windows (n, C, L) in g generated from z (n, D) with ``setting`` through :func:`flowfm.fast_sample`, the
    wall seconds of the sampling calls and the per-batch noise seeds. On CUDA batch 0 runs once untimed first
    (CUDA-graph capture / autotune are a one-off cost, reported by the benchmarks, not here)."""
    from flowfm.sampling import fast_sample

    device = z.device
    batch_size = _positive_int(batch_size, "batch_size")
    starts = list(range(0, len(z), batch_size))
    seeds = [batch_seed(seed, k) for k in range(len(starts))]

    def call(k: int) -> torch.Tensor:
        gen = torch.Generator(device=device).manual_seed(seeds[k])
        return fast_sample(model, z=z[starts[k]:starts[k] + batch_size], steps=setting.steps,
                           method=setting.method, generator=gen, backend=backend)

    if device.type == "cuda":
        call(0)
        torch.cuda.synchronize(device)
    out, seconds = [], 0.0
    for k in range(len(starts)):
        t0 = time.perf_counter()
        x = call(k)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        out.append(x.float().cpu().numpy())
    return np.concatenate(out), seconds, seeds


def setting_quality(cond: ConditioningSet, x_gen: np.ndarray, seed: int = 0, classifier: str = "hgb") -> dict:
    """FFD, discriminative score / accuracy, TSTR macro-F1 and reconstruction correlation of x_gen (n, C, L),
    generated from E(cond.x), as flat fields (see the module docstring)."""
    rep = generation_report(cond.x, x_gen, fake_y=cond.y, test_x=cond.test_x, test_y=cond.test_y, paired=True,
                            fs=cond.fs, seed=seed, classifier=classifier)
    return dict(frechet=rep["frechet"], discriminative_score=rep["discriminative_score"],
                discriminative_accuracy=rep["discriminative_accuracy"], tstr_macro_f1=rep["tstr_macro_f1"],
                reconstruction_corr=rep["reconstruction"]["flat"],
                reconstruction_corr_per_axis=rep["reconstruction"]["per_axis_mean"])


def reference_quality(cond: ConditioningSet, seed: int = 0, classifier: str = "hgb") -> dict:
    """TRTR macro-F1 and the real-vs-real FFD / discriminative score of x_ref against <= n TEST-subject windows."""
    m = min(len(cond.x), len(cond.test_x))
    pick = np.sort(np.random.default_rng(seed).choice(len(cond.test_x), size=m, replace=False))
    real_b = cond.test_x[pick]
    out = dict(trtr_macro_f1=trtr_macro_f1(cond.x, cond.y, cond.test_x, cond.test_y, fs=cond.fs),
               real_vs_real_n=m)
    if m >= 5:
        out["real_vs_real_frechet"] = feature_frechet_distance(cond.x, real_b, fs=cond.fs)
        out["real_vs_real_discriminative_score"] = discriminative_score(cond.x, real_b, seed=seed, fs=cond.fs,
                                                                        classifier=classifier)
    return out


# --------------------------------------------------------------------------------------------------------- sweep
ModelLike = Union[str, os.PathLike, torch.nn.Module]


def _load(models, device, backend) -> list[tuple[object, Optional[str]]]:
    from flowfm.checkpoint import load_model

    items = list(models.values()) if isinstance(models, Mapping) else list(models)
    if not items:
        raise ValueError("pass at least one model or checkpoint folder")
    out = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            model, path = load_model(item, map_location=device, backend=backend), str(item)
        else:
            model, path = item.to(device), getattr(item, "checkpoint_path", None)
        method = getattr(model, "method", "flowfm")
        if method not in GENERATIVE:
            raise ValueError(f"{path or type(model).__name__} holds a {method!r} model, which has no generator; "
                             f"expected one of {GENERATIVE}")
        out.append((model, path))
    return out


def generation_sweep(models: Union[ModelLike, Sequence[ModelLike], Mapping[str, ModelLike]], data="hapt", *,
                     n: int = 256, nfe: Optional[Iterable[int]] = None,
                     flow_methods: Sequence[str] = DEFAULT_FLOW_METHODS, ddim: Optional[Iterable[int]] = None,
                     ddpm: Optional[bool] = None, seed: int = 0, batch_size: int = 64, test_fraction: float = 0.3,
                     max_test: Optional[int] = None, device: Optional[str] = None, backend: Optional[str] = None,
                     classifier: str = "hgb", data_name: Optional[str] = None,
                     progress: Optional[Callable[[str], None]] = print) -> dict:
    """Quality and sampling time of every setting of every model on one shared conditioning set.

    ``models``: checkpoint folders and/or loaded models (FlowFM or DiffusionFM). ``nfe`` (flow models; default
    :data:`DEFAULT_NFE`), ``ddim`` (diffusion; default :data:`DEFAULT_DDIM`), ``ddpm`` (diffusion; default True):
    None = the default for the models present; an explicit non-empty value with no model of that family is a
    ValueError (e.g. ``ddim=[10]`` with only a flow checkpoint). ``data``: WindowDataset, "hapt" or a folder.
    Returns a JSON-able dict: ``rows`` (one per setting, see the module docstring), ``reference``, ``skipped``,
    ``conditioning``, ``models``, ``environment``, the arguments. Write it with :func:`write_sweep`.
    """
    say = progress or (lambda _msg: None)
    if isinstance(models, (str, os.PathLike, torch.nn.Module)):
        models = [models]
    dev = torch.device(device or "cpu")
    loaded = _load(models, dev, backend)
    families = {getattr(m, "method", "flowfm") for m, _ in loaded}
    nfe, ddim = (None if v is None else tuple(v) for v in (nfe, ddim))
    for value, flag, family, what in ((nfe, "nfe", "flowfm", "flow ODE solvers"),
                                      (ddim, "ddim", "diffusion", "DDIM is a diffusion sampler"),
                                      (ddpm, "ddpm", "diffusion", "DDPM is a diffusion sampler")):
        requested = bool(value)
        if requested and family not in families:
            given = ", ".join(f"{p or type(m).__name__} ({getattr(m, 'method', 'flowfm')})" for m, p in loaded)
            raise ValueError(f"{flag}={value!r} requested but no {family} model was given ({what}); "
                             f"models: {given}")
    nfe = tuple(DEFAULT_NFE if nfe is None else nfe)
    ddim = tuple(DEFAULT_DDIM if ddim is None else ddim)
    ddpm = True if ddpm is None else bool(ddpm)

    name = data_name or (str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__)
    cond = conditioning_split(data, n=n, seed=seed, test_fraction=test_fraction, max_test=max_test)
    say(f"conditioning: {len(cond.x)} windows of {len(cond.train_subjects)} training subjects; test: "
        f"{len(cond.test_x)} windows of {len(cond.test_subjects)} held-out subjects")
    t0 = time.perf_counter()
    reference = reference_quality(cond, seed=seed, classifier=classifier)
    reference["seconds"] = time.perf_counter() - t0

    rows, skipped, model_info = [], [], []
    for model, path in loaded:
        family = getattr(model, "method", "flowfm")
        c = model.config
        if (c.in_channels, c.window) != cond.x.shape[1:]:
            raise ValueError(f"{path or family}: model expects windows (C, L) = ({c.in_channels}, {c.window}), "
                             f"the data has {cond.x.shape[1:]}")
        if family == "flowfm":
            settings, skip = flow_settings(nfe, flow_methods)
            skipped += skip
        else:
            settings = diffusion_settings(model, ddim, ddpm)
        t0 = time.perf_counter()
        z = encode(model, cond.x)
        encode_s = time.perf_counter() - t0
        model_info.append(dict(family=family, checkpoint=path, parameters=model.num_parameters(),
                               preset=getattr(c, "preset", None), encode_seconds=encode_s,
                               metadata=getattr(model, "checkpoint_metadata", None)))
        for s in settings:
            x_gen, seconds, seeds = sample_setting(model, z, s, seed=seed, batch_size=batch_size, backend=backend)
            t1 = time.perf_counter()
            quality = setting_quality(cond, x_gen, seed=seed, classifier=classifier)
            row = dict(model=family, checkpoint=path, method=s.method, steps=s.steps, nfe=s.nfe, n=len(x_gen),
                       batch_size=batch_size, seconds=seconds, seconds_per_window=seconds / len(x_gen),
                       windows_per_s=len(x_gen) / seconds if seconds > 0 else math.inf, **quality,
                       metrics_seconds=time.perf_counter() - t1, conditioning_sha256=cond.sha256,
                       noise_seeds=seeds)
            rows.append(row)
            say(f"{family:9s} {s.name:10s} NFE {s.nfe:5d}  {seconds:9.2f} s  FFD {row['frechet']:8.3f}  "
                f"disc {row['discriminative_score']:.3f}  TSTR {row['tstr_macro_f1']:.3f}  "
                f"r {row['reconstruction_corr']:.3f}")
    _add_speedups(rows)
    return dict(suite="generation_sweep", schema=SCHEMA_VERSION, data=name, n=len(cond.x), seed=seed,
                batch_size=batch_size, test_fraction=test_fraction, classifier=classifier,
                nfe=list(nfe), flow_methods=list(flow_methods), ddim=list(ddim), ddpm=ddpm,
                nfe_counting=("flowfm.solvers.nfe: velocity evaluations per sample; euler 1 per step, heun 2 per "
                              "step (corrector on every step, the last included), so heun at NFE n runs n/2 steps; "
                              "ddim NFE = steps; ddpm NFE = T"),
                timing=("seconds of the fast_sample calls for all n windows in batches of batch_size, z = E(x_ref) "
                        "precomputed; CUDA: one untimed warm-up batch first"),
                conditioning=cond.describe(), reference=reference, models=model_info, rows=rows, skipped=skipped,
                environment=environment(dev))


def _add_speedups(rows: list[dict]) -> None:
    """``speedup_vs_ddpm`` (DDPM-1000 seconds / seconds) and ``ffd_le_ddpm`` (FFD <= DDPM's) on every row, when a
    DDPM row exists (the first one found)."""
    ddpm = next((r for r in rows if r["method"] == "ddpm"), None)
    if ddpm is None:
        return
    for r in rows:
        r["speedup_vs_ddpm"] = ddpm["seconds"] / r["seconds"] if r["seconds"] > 0 else None
        r["ffd_le_ddpm"] = bool(r["frechet"] <= ddpm["frechet"])


def equal_quality_speedup(rows: list[dict], ref: dict, time_key: str = "seconds",
                          quality_key: str = "frechet") -> Optional[dict]:
    """The fastest row whose ``quality_key`` (lower is better) is <= the reference row's, with its speed-up
    ``ref[time_key] / row[time_key]``; None when no other row reaches the reference's quality."""
    ok = [r for r in rows if r is not ref and r.get(quality_key) is not None
          and r[quality_key] <= ref[quality_key] and r[time_key] > 0]
    if not ok:
        return None
    best = min(ok, key=lambda r: r[time_key])
    return dict(row=best, speedup=ref[time_key] / best[time_key])


# ------------------------------------------------------------------------------------------------ table and plot
def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"
    return str(v)


def sweep_markdown(result: dict) -> str:
    """Markdown: a header (data, split, seed, device, versions, commit, NFE counting) and one row per setting, plus
    the TRTR / real-vs-real reference row."""
    e, c, ref = result["environment"], result["conditioning"], result["reference"]
    lines = [f"Generation quality vs NFE: data `{result['data']}`, {c['n']} conditioning windows of "
             f"{len(c['train_subjects'])} training subjects (seed {result['seed']}), TSTR tested on {c['n_test']} "
             f"windows of {len(c['test_subjects'])} held-out subjects {c['test_subjects']}; batch "
             f"{result['batch_size']}; device **{e['device_name']}** ({e['device']}, {e['torch_threads']} threads), "
             f"torch {e['torch']}, triton {e['triton']}, commit `{e['git_commit']}`, {e['time_utc']}.",
             "", f"NFE counting: {result['nfe_counting']}. Timing: {result['timing']}.", ""]
    headers = ["model", "sampler", "steps", "NFE", "seconds", "windows/s", "FFD", "disc. score", "TSTR F1",
               "recon. r", "x faster than DDPM-1000", "FFD <= DDPM's"]
    lines += ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    families = [m["family"] for m in result.get("models", [])]
    several = len(families) > len(set(families))  # e.g. two flow checkpoints: name each row's checkpoint
    for r in result["rows"]:
        label = r["model"] + (f" (`{Path(r['checkpoint']).parent.parent.name}/{Path(r['checkpoint']).name}`)"
                              if several and r.get("checkpoint") else "")
        cells = [label, r["method"], r["steps"], r["nfe"], r["seconds"], r["windows_per_s"], r["frechet"],
                 r["discriminative_score"], r["tstr_macro_f1"], r["reconstruction_corr"],
                 r.get("speedup_vs_ddpm"), r.get("ffd_le_ddpm")]
        lines.append("| " + " | ".join(_fmt(v) for v in cells) + " |")
    lines.append("| real (held-out subjects) | - | - | - | - | - | " + " | ".join(
        _fmt(v) for v in (ref.get("real_vs_real_frechet"), ref.get("real_vs_real_discriminative_score"),
                          ref["trtr_macro_f1"])) + " (TRTR) | - | - | - |")
    ddpm = next((r for r in result["rows"] if r["method"] == "ddpm"), None)
    if ddpm is not None:
        best = equal_quality_speedup(result["rows"], ddpm)
        lines += ["", ("No setting reaches DDPM-1000's FFD " + _fmt(ddpm["frechet"]) + "." if best is None else
                       f"Fastest setting at DDPM-1000's quality or better (FFD <= {_fmt(ddpm['frechet'])}): "
                       f"{best['row']['model']} {best['row']['method']}-{best['row']['steps']} (NFE "
                       f"{best['row']['nfe']}, FFD {_fmt(best['row']['frechet'])}), "
                       f"**{_fmt(best['speedup'])}x faster** than DDPM-1000.")]
    for s in result.get("skipped", []):
        lines.append(f"- skipped {s['model']} {s['setting']}: {s['reason']}")
    return "\n".join(lines).rstrip() + "\n"


MARKERS = {("flowfm", "euler"): ("o", "tab:blue"), ("flowfm", "heun"): ("s", "tab:green"),
           ("flowfm", "midpoint"): ("D", "tab:cyan"), ("flowfm", "rk4"): ("P", "tab:purple"),
           ("diffusion", "ddim"): ("^", "tab:orange"), ("diffusion", "ddpm"): ("*", "tab:red")}


def plot_quality_vs_time(rows: list[dict], path, title: str = "", reference_ffd: Optional[float] = None,
                         time_key: str = "seconds", xlabel: str = "sampling seconds (log)") -> Path:
    """Scatter of FFD (y) against ``rows[i][time_key]`` (x, log scale), one marker per setting annotated with its
    NFE; flow solvers and diffusion samplers differ in marker and colour. PNG written atomically (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for r in rows:
        if r.get("frechet") is None or not r.get(time_key):
            continue
        key = (r["model"], r["method"])
        marker, color = MARKERS.get(key, ("x", "black"))
        label = f"{'flow' if r['model'] == 'flowfm' else 'diffusion'} {r['method']}"
        ax.scatter(r[time_key], r["frechet"], marker=marker, color=color, s=90 if marker == "*" else 45,
                   label=None if key in seen else label, zorder=3)
        seen.add(key)
        ax.annotate(f"{r['nfe']}", (r[time_key], r["frechet"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    if reference_ffd is not None and math.isfinite(reference_ffd):
        ax.axhline(reference_ffd, ls=":", color="gray", label="real vs real (held-out subjects)")
    ffd = [r["frechet"] for r in rows if r.get("frechet") is not None]
    if ffd and min(ffd) > 0 and max(ffd) / min(ffd) > 30:
        ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("feature Frechet distance (lower is better)")
    ax.set_title(title or "generation quality vs sampling time (labels: NFE)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def sweep_paths(out, stem: str = "generation_sweep") -> dict[str, Path]:
    """The files :func:`write_sweep` writes: ``<out>/<stem>.json``, ``<stem>.md``, ``<stem>_quality_vs_time.png``."""
    out = Path(out)
    return dict(json=out / f"{stem}.json", markdown=out / f"{stem}.md", plot=out / f"{stem}_quality_vs_time.png")


def write_sweep(result: dict, out, stem: str = "generation_sweep") -> dict[str, Path]:
    """:func:`sweep_paths`, each written atomically."""
    Path(out).mkdir(parents=True, exist_ok=True)
    paths = sweep_paths(out, stem)
    atomic_write_text(paths["json"], json.dumps(result, indent=2, default=_json_default) + "\n")
    atomic_write_text(paths["markdown"], sweep_markdown(result))
    plot_quality_vs_time(result["rows"], paths["plot"], reference_ffd=result["reference"].get("real_vs_real_frechet"),
                         title=f"{result['data']}: FFD vs sampling time, {result['n']} windows (labels: NFE)")
    return paths


__all__ = ["generation_sweep", "write_sweep", "sweep_paths", "sweep_markdown", "plot_quality_vs_time", "conditioning_split",
           "ConditioningSet", "Setting", "flow_settings", "diffusion_settings", "sample_setting", "setting_quality",
           "reference_quality", "encode", "batch_seed", "equal_quality_speedup", "DEFAULT_NFE", "DEFAULT_DDIM",
           "DEFAULT_FLOW_METHODS", "QUICK"]
