"""``flowfm compare``: the whole comparison of docs/design.md §4-5 on one dataset, in one command.

1. **Pretrain** every method (``flowfm``, ``diffusion``, ``ssl-wearables``) for every seed with the same budget
   (:class:`~flowfm.training.TrainConfig`: epochs, batch, learning rate, warm-up; every epoch checkpoint kept) into
   ``OUT/pretrain/<method>/seed_<s>/``, exactly as ``flowfm pretrain --method M --seed s`` does. A finished run
   (``model/`` present) is reused, an interrupted one resumed, so the command can be re-run after a crash and
   only does the missing work. Pretraining is transductive by default (all windows, labels unused, the test
   subjects' unlabelled windows included, as in the usual SSL benchmark setting); ``inductive=True``
   (``--inductive``) pretrains one model per fold and seed without that fold's test subjects
   (``OUT/pretrain/<method>/seed_<s>/fold_<f>/``), so no window of a test subject reaches any training.
   ``split`` (``--split design|report``) evaluates on one part of the fixed design / report subject split only
   (:mod:`flowfm.evaluation.subject_split`). Design runs pretrain without the report subjects; report runs with
   ``inductive`` pretrain each seed's model once without them, so no window of an evaluated subject reaches it.
2. **Evaluate** each pretrained encoder and the baselines that need no pretraining (``random``: the same encoder at
   random init, frozen; ``scratch``: the same encoder trained from random init, in fine-tuning mode) with the
   subject-wise protocol (:mod:`flowfm.evaluation.protocol`) in every requested mode and label regime. Seed s of
   every row uses pretraining seed s and evaluation seed s, so folds and label-subject draws are identical across
   rows and differences are paired. ``readout="stages"`` reads the frozen-feature modes (linear, mlp) from the
   pooled outputs of every encoder stage instead of z (:mod:`flowfm.evaluation.features`); finetune is unaffected.
3. **Training time to quality** (:mod:`flowfm.evaluation.time_to_quality`): the linear-probe macro-F1 of FlowFM and
   diffusion after each checkpointed epoch, and the time FlowFM needs to reach diffusion's final quality.
4. Writes ``OUT/compare.json``, ``OUT/compare.md`` (tables with paired differences) and one bar plot per mode
   (``compare_<readout>...`` for a readout other than z, so both can share ``OUT``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from flowfm.data.atomic import atomic_write_text
from flowfm.environment import environment
from flowfm.methods import METHODS


@dataclass
class CompareConfig:
    """What ``flowfm compare`` runs. ``label_subjects``: None = all labels, k = windows of k training subjects.
    ``readout``: frozen features of modes linear / mlp, ``"z"`` or ``"stages"`` (:mod:`flowfm.evaluation.features`)."""
    data: str = "hapt"
    out: str = "runs/compare"
    methods: tuple = METHODS
    seeds: int = 5
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    preset: str = "small"
    modes: tuple = ("linear",)
    label_subjects: tuple = (None, 1, 3, 5)
    draws: int = 2
    folds: int = 5
    finetune_label_subjects: Optional[tuple] = None
    finetune_draws: Optional[int] = None
    ttq_epochs: Optional[tuple] = None
    max_windows: Optional[int] = None
    quick: bool = False
    evaluate_only: bool = False
    time_to_quality: bool = True
    variants: dict = field(default_factory=dict)
    readout: str = "z"
    inductive: bool = False
    split: Optional[str] = None

    def __post_init__(self):
        from flowfm.evaluation.features import check_readout
        from flowfm.evaluation.subject_split import SPLITS

        check_readout(self.readout)   # before any pretraining, not hours later
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods {', '.join(unknown) or '(none)'} unknown; expected a comma list of "
                             f"{', '.join(METHODS)}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {self.split!r}")
        if self.split == "design" and self.inductive:
            raise ValueError("split 'design' pretrains on the design subjects and evaluates on them; inductive "
                             "applies to split 'report' (or no split: per fold)")
        from flowfm.training.pretrain_run import parse_pretrain_args

        for name, words in self.variants.items():  # a typo in a variant fails now, not after the other runs
            try:
                parse_pretrain_args(["--out", "unused", *words])
            except ValueError as exc:
                raise ValueError(f"variant {name!r}: {exc}") from None

    @classmethod
    def quick_config(cls, **overrides) -> "CompareConfig":
        """A CI-sized comparison: 2 seeds, 1 epoch, 512 windows, linear probe with all labels and k = 3."""
        base = dict(seeds=2, epochs=1, warmup_steps=5, max_windows=512, label_subjects=(None, 3), draws=1,
                    folds=3, quick=True)
        base.update(overrides)
        return cls(**base)


def run_dir(cfg: CompareConfig, method: str, seed: int) -> Path:
    return Path(cfg.out) / "pretrain" / method / f"seed_{seed}"


def _pretrain_args(cfg: CompareConfig, run: str, seed: int, data_arg: str) -> list[str]:
    """``flowfm pretrain`` options of run ``run``: a method name, or a variant name whose extra arguments (from
    ``cfg.variants``, e.g. ``["--method", "flowfm", "--t-sampling", "uniform"]``) come after the shared budget."""
    extra = list(cfg.variants[run]) if run in cfg.variants else ["--method", run]
    return ["--data", data_arg, "--seed", str(seed), "--epochs", str(cfg.epochs),
            "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr), "--warmup-steps", str(cfg.warmup_steps),
            "--preset", cfg.preset, "--keep-checkpoints", "0", "--out", str(run_dir(cfg, run, seed)),
            "--no-progress", *extra]


def _pretrained(cfg: CompareConfig, run: str, seed: int, folder: Path, args: list[str], log,
                optional: bool = False) -> Optional[Path]:
    """``folder/model`` of one pretraining run: reused when finished, resumed when interrupted, else trained.
    Under ``evaluate_only`` a missing run is an error, or None when ``optional``."""
    from flowfm.training.pretrain_run import parse_pretrain_args, pretrain_run

    what = f"{run} seed {seed}" + (f" {folder.name}" if folder.name.startswith("fold_") else "")
    if (folder / "model" / "config.json").is_file():
        log(f"[compare] reusing {folder / 'model'}")
        return folder / "model"
    if cfg.evaluate_only:
        if optional:
            return None
        raise FileNotFoundError(f"evaluate-only: {folder / 'model'} is missing (pretrain it first)")
    resume = (folder / "checkpoints" / "latest").is_file()
    log(f"[compare] pretraining {what}{' (resuming)' if resume else ''}")
    return pretrain_run(parse_pretrain_args(args + (["--resume"] if resume else []))).model_dir


def pretrain_all(cfg: CompareConfig, data_arg: str, log=print,
                 fold_test_subjects: Optional[list] = None, held_out_subjects: Optional[list] = None) -> dict:
    """Pretrain (or reuse / resume) every method and variant x seed; returns {run: {seed: model folder}}.

    Seed-major order (seed 0 of every run, then seed 1, ...), so an interrupted comparison holds complete, paired
    seeds. ``cfg.inductive``: without ``held_out_subjects`` (no ``cfg.split``), one run per fold,
    ``.../seed_<s>/fold_<f>/``, pretrained without the test subjects of fold f (``fold_test_subjects[f]``); the
    entry of a seed is then the list of its per-fold model folders. With ``held_out_subjects`` (under ``cfg.split``:
    the report subjects, for design work and for an inductive report run), one run per seed pretrained without any
    of them. Under ``evaluate_only`` a *variant* may have fewer finished seeds than ``cfg.seeds`` (a design
    variant stopped early because it lost): it is evaluated on the seeds it has, paired with the other rows on
    those."""
    runs = (*cfg.methods, *cfg.variants)
    models = {run: {} for run in runs}
    for seed in range(cfg.seeds):
        for method in runs:
            folder = run_dir(cfg, method, seed)
            optional = method in cfg.variants
            args = _pretrain_args(cfg, method, seed, data_arg)
            if held_out_subjects is not None:
                args += ["--exclude-subjects", ",".join(str(s) for s in held_out_subjects)]
            if not cfg.inductive or held_out_subjects is not None:
                found = _pretrained(cfg, method, seed, folder, args, log, optional)
            else:
                found = []
                for fold, subjects in enumerate(fold_test_subjects):
                    fold_args = list(args)
                    fold_args[fold_args.index("--out") + 1] = str(folder / f"fold_{fold}")
                    fold_args += ["--exclude-subjects", ",".join(str(s) for s in subjects)]
                    found.append(_pretrained(cfg, method, seed, folder / f"fold_{fold}", fold_args, log, optional))
                found = None if None in found else found
            if found is not None:
                models[method][seed] = found
    for method in runs:
        if not models[method]:
            raise FileNotFoundError(f"evaluate-only: variant {method} has no finished seed under "
                                    f"{run_dir(cfg, method, 0).parent}")
        if len(models[method]) < cfg.seeds:
            log(f"[compare] {method}: evaluated on its {len(models[method])} finished seeds {sorted(models[method])}")
    return models


def time_to_quality_table(cfg: CompareConfig, labelled, method: str = "flowfm", baseline: str = "diffusion",
                          label_subjects: Optional[int] = None) -> dict:
    """Per seed: probe curves of ``method`` and ``baseline`` and the time each needs to reach the baseline's final
    linear-probe macro-F1 (same folds, draws and seed)."""
    from flowfm.evaluation.time_to_quality import compare_time_to_quality, quality_curve

    per_seed = []
    for seed in range(cfg.seeds):
        curves = {name: quality_curve(run_dir(cfg, name, seed), labelled.x, labelled.y, labelled.pid,
                                      epochs=cfg.ttq_epochs, label_subjects=label_subjects,
                                      draws=cfg.draws if label_subjects else 1, n_folds=cfg.folds, seed=seed)
                  for name in (method, baseline)}
        per_seed.append({"seed": seed, "curves": curves,
                         "result": compare_time_to_quality(curves[method], curves[baseline])})
    ratios = [r["result"]["time_ratio"] for r in per_seed]
    reached = [x for x in ratios if x is not None]
    return {"method": method, "baseline": baseline, "label_subjects": label_subjects, "per_seed": per_seed,
            "reached": len(reached), "time_ratio_mean": float(np.mean(reached)) if reached else None,
            "epoch_ratio_mean": float(np.mean([r["result"]["epoch_ratio"] for r in per_seed
                                               if r["result"]["epoch_ratio"] is not None])) if reached else None}


ROW_NAMES = {"flowfm": "FlowFM", "diffusion": "diffusion", "ssl-wearables": "SSL-Wearables"}
RANDOM_ROW, SCRATCH_ROW = "random init (frozen)", "supervised from scratch"


def _regime_name(k: Optional[int]) -> str:
    return "all" if k is None else f"k{k}"


def _cache_name(k: Optional[int], draws: int) -> str:
    return "all" if k is None else f"k{k}_draws{draws}"


def _eval_dir(cfg: CompareConfig, mode: str, k: Optional[int], draws: int) -> Path:
    """``OUT/eval/<mode>/<regime>`` for readout z (the original layout), ``OUT/eval/<mode>_<readout>/<regime>``
    for another readout of a frozen-feature mode, so a cached z report is never reused for another readout."""
    from flowfm.evaluation.protocol import FROZEN_MODES

    folder = mode if cfg.readout == "z" or mode not in FROZEN_MODES else f"{mode}_{cfg.readout}"
    return Path(cfg.out) / "eval" / folder / _cache_name(k, draws)


def evaluation_rows(cfg: CompareConfig, mode: str, models: dict, labelled) -> dict:
    """{row name: (model or seed -> model factory, evaluation mode, seeds)} for one mode. Pretrained rows load seed
    s's checkpoint for evaluation seed s (over the seeds they have); the random-init row re-draws its init per seed;
    ``scratch`` replaces it in fine-tuning (a frozen random encoder is not fine-tuned)."""
    from flowfm.checkpoint import load_model
    from flowfm.evaluation import PerFold, encoder_model

    def load(folder):
        return PerFold(load_model(f) for f in folder) if isinstance(folder, list) else load_model(folder)

    rows = {}
    for method, folders in models.items():
        rows[ROW_NAMES.get(method, method)] = ((lambda s, f=folders: load(f[s])), mode, sorted(folders))
    c, length = labelled.x.shape[1], labelled.x.shape[2]
    all_seeds = list(range(cfg.seeds))
    if mode == "finetune":
        model, _ = encoder_model("scratch", preset=cfg.preset, in_channels=c, window=length)
        rows[SCRATCH_ROW] = (model, "scratch", all_seeds)
    else:
        factory, _ = encoder_model("random", preset=cfg.preset, in_channels=c, window=length)
        rows[RANDOM_ROW] = (factory, mode, all_seeds)
    return rows


def evaluate_all(cfg: CompareConfig, models: dict, labelled, fit_config=None, log=print) -> dict:
    """Every row x mode x label regime, each report cached as ``OUT/eval/<mode>/<regime>/<row>.json`` (re-runs and
    parallel invocations with disjoint modes reuse finished reports; the cache key holds the draws, the other
    settings must not change between runs sharing ``out``). ``cfg.readout`` applies to the frozen-feature modes
    (linear, mlp; cached under ``OUT/eval/<mode>_<readout>/`` unless it is z); finetune rows always read z.
    Returns {mode: {regime: {row: report}}}."""
    from flowfm.evaluation import FitConfig, evaluate_encoder
    from flowfm.evaluation.protocol import FROZEN_MODES

    fit_config = fit_config or FitConfig()
    results: dict = {}
    for mode in cfg.modes:
        rows = evaluation_rows(cfg, mode, models, labelled)
        finetune = mode == "finetune"
        regimes = cfg.finetune_label_subjects if finetune and cfg.finetune_label_subjects is not None \
            else cfg.label_subjects
        draws = cfg.finetune_draws if finetune and cfg.finetune_draws is not None else cfg.draws
        for k in regimes:
            regime = _regime_name(k)
            for row, (model, eval_mode, seeds) in rows.items():
                path = _eval_dir(cfg, mode, k, draws) / f"{row.replace(' ', '_')}.json"
                report = json.loads(path.read_text()) if path.is_file() else None
                if report is None or report["seeds"] != seeds:   # new, or more seeds pretrained since
                    log(f"[compare] evaluating {row}: {eval_mode}, labels {regime}")
                    report = evaluate_encoder(model, labelled.x, labelled.y, labelled.pid, eval_mode,
                                              seeds=seeds, n_folds=cfg.folds, label_subjects=k,
                                              draws=draws, config=fit_config, name=row, data=cfg.data,
                                              progress=None,
                                              readout=cfg.readout if eval_mode in FROZEN_MODES else "z")
                    write_json(path, report)
                results.setdefault(mode, {}).setdefault(regime, {})[row] = report
    return results


def verdict_table(results: dict, method: str = "FlowFM") -> str:
    """Markdown: one line per (mode, label regime), one column per baseline: the paired difference of macro-F1
    (``method`` minus baseline, mean +- SD over (seed, draw) pairs, positive pairs / n) and its verdict."""
    from flowfm.evaluation import paired_differences

    baselines = []
    for regimes in results.values():
        for reports in regimes.values():
            baselines += [r for r in reports if r != method and r not in baselines]
    lines = ["| mode | labels | " + " | ".join(f"{method} - {b}" for b in baselines) + " |",
             "|---|---|" + "---|" * len(baselines)]
    for mode, regimes in results.items():
        for regime, reports in regimes.items():
            if method not in reports:
                continue
            cells = []
            for b in baselines:
                if b not in reports:
                    cells.append("-")
                    continue
                d = paired_differences(reports[method], reports[b])
                cells.append(f"{d['mean']:+.3f} ± {d['sd']:.3f} ({d['n_positive']}/{d['n']}) **{d['verdict']}**")
            label = "all" if regime == "all" else f"{regime[1:]} subject(s)"
            lines.append(f"| {mode} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: what a comparison writes into its OUT (and --overwrite removes; other files are left)
COMPARE_OUTPUTS = ("pretrain", "eval", "data_subset", "compare*.json", "compare*.md", "compare*.png",
                   "time_to_quality.json", "compare_config.json")

#: CompareConfig fields that define the models and cached reports in OUT: a resumed comparison must keep them
#: (seeds, methods, new variants, modes, label regimes and the readout may change: they add rows)
FIXED_ON_RESUME = ("data", "epochs", "batch_size", "lr", "warmup_steps", "preset", "draws", "folds",
                   "finetune_draws", "max_windows", "quick", "inductive", "split")
#: of those, the ones only pretraining reads: ``evaluate_only`` takes them from the stored settings
PRETRAINING_ONLY = ("epochs", "batch_size", "lr", "warmup_steps", "quick")


def check_resumable(cfg: CompareConfig, out: Path, log=print) -> CompareConfig:
    """``cfg`` if the comparison in ``out`` may continue with it (under ``evaluate_only`` with the pretraining
    settings it was made with); ValueError for settings that would mix its models or cached reports with other
    ones. A new comparison's settings are recorded in ``OUT/compare_config.json``."""
    from dataclasses import replace

    path = out / "compare_config.json"
    current = json.loads(json.dumps(asdict(cfg), default=str))
    if not path.is_file():
        write_json(path, current)
        return cfg
    stored = json.loads(path.read_text())
    if cfg.evaluate_only:
        adopted = {k: stored[k] for k in PRETRAINING_ONLY if k in stored and stored[k] != current[k]}
        if adopted:
            log(f"[compare] evaluate-only: the models in {out} were pretrained with "
                + ", ".join(f"{k} {v}" for k, v in adopted.items()))
            cfg = replace(cfg, **adopted)
            current.update(adopted)
    changed = [f"{k} {stored.get(k)!r} -> {current[k]!r}" for k in FIXED_ON_RESUME if stored.get(k) != current[k]]
    changed += [f"variant {name!r} {stored['variants'][name]} -> {words}" for name, words in current["variants"].items()
                if name in stored.get("variants", {}) and stored["variants"][name] != words]
    if changed:
        raise ValueError(f"{out} holds a comparison made with other settings ({'; '.join(changed)}); its models "
                         f"and reports would be mixed with new ones: give the stored settings, another --out, or "
                         f"--overwrite")
    merged = dict(stored, methods=sorted(set(stored.get("methods", [])) | set(current["methods"])),
                  variants={**stored.get("variants", {}), **current["variants"]},
                  seeds=max(stored.get("seeds", 0), current["seeds"]))
    if merged != stored:
        write_json(path, merged)
    return cfg


def run_compare(cfg: CompareConfig, log=print, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Pretrain, evaluate, time-to-quality, then write compare.json / compare.md / plots under ``cfg.out``.

    ``cfg.out`` is owned by this call (:mod:`flowfm.run_folder`): a folder holding a comparison is continued only
    with ``resume`` (or ``cfg.evaluate_only``), and only with the settings it was made with
    (:func:`check_resumable`); ``overwrite`` replaces it."""
    from flowfm.run_folder import owned

    with owned(cfg.out, resume=resume or (cfg.evaluate_only and not overwrite), overwrite=overwrite,
               what="comparison", writes=COMPARE_OUTPUTS):
        return _run_compare(check_resumable(cfg, Path(cfg.out), log), log)


def _run_compare(cfg: CompareConfig, log) -> dict:
    from flowfm.data import load_folder, load_hapt
    from flowfm.evaluation import bar_plot, markdown_table
    from flowfm.evaluation.splits import subject_folds

    t0 = time.perf_counter()
    out = Path(cfg.out)
    stem = "compare" if cfg.readout == "z" else f"compare_{cfg.readout}"
    ds = load_hapt() if cfg.data == "hapt" else load_folder(cfg.data)
    data_arg = cfg.data
    if cfg.max_windows is not None and len(ds) > cfg.max_windows:
        from flowfm.data import save_folder

        idx = np.sort(np.random.default_rng(0).choice(len(ds), cfg.max_windows, replace=False))
        ds = ds.subset(idx)
        data_arg = str(out / "data_subset")
        if not (out / "data_subset" / "X.npy").is_file():
            save_folder(ds, data_arg)
    labelled = ds.labelled()
    held_out = excluded = None
    if cfg.split is not None:
        from flowfm.evaluation.subject_split import design_report_split, subject_mask

        parts = design_report_split(ds.pid)
        held_out = parts[cfg.split]
        labelled = labelled.subset(subject_mask(labelled.pid, split=cfg.split))
        # design work never sees a report subject; a report run does not either when inductive
        excluded = parts["report"] if cfg.split == "design" or cfg.inductive else None
    fold_subjects = [np.unique(labelled.pid[test]) for _, test in subject_folds(labelled.pid, cfg.folds)]
    models = pretrain_all(cfg, data_arg, log, fold_subjects, excluded)
    results = evaluate_all(cfg, models, labelled, log=log)
    ttq = None
    if cfg.inductive and cfg.split is None and cfg.time_to_quality:
        log("[compare] time to quality needs one run per seed; skipped under per-fold --inductive")
    elif cfg.time_to_quality and "flowfm" in cfg.methods and "diffusion" in cfg.methods:
        path = out / "time_to_quality.json"
        if path.is_file():
            ttq = json.loads(path.read_text())
        else:
            log("[compare] time to quality (probe after each epoch)")
            ttq = time_to_quality_table(cfg, labelled)
            ttq.update(suite="time_to_quality", data=cfg.data, environment=environment(), epochs=cfg.epochs)
            write_json(path, ttq)

    sections = [f"# Comparison on {cfg.data}", "",
                f"{len(ds)} windows, {len(labelled)} labelled, {len(np.unique(labelled.pid))} subjects; preset "
                f"{cfg.preset}; every method pretrained {cfg.epochs} epochs (batch {cfg.batch_size}, lr {cfg.lr}) "
                + ("unless its variant says otherwise " if cfg.variants else "")
                + f"for each of {cfg.seeds} seeds; evaluation seed s uses pretraining seed s; frozen-feature readout "
                f"{cfg.readout}; "
                + (f"evaluated on the {cfg.split} subjects ({', '.join(str(s) for s in held_out)}) only; "
                   if cfg.split is not None else "")
                + _pretraining_scope(cfg)
                + f"; {_machine()}."
                + "".join(f" {ROW_NAMES.get(m, m)} was pretrained for seeds {sorted(f)} only; its rows and "
                          "differences use those seeds." for m, f in models.items()
                          if len(f) < cfg.seeds)
                + "".join(f" Variant {name} adds `{' '.join(args)}` after the shared arguments (a later flag wins)."
                          for name, args in cfg.variants.items()), "",
                "## Verdicts (FlowFM minus each baseline, paired macro-F1)", "", verdict_table(results)]
    plots = {}
    for mode, regimes in results.items():
        for regime, reports in regimes.items():
            sections += [f"## {mode}, labels: {regime}", "",
                         markdown_table(reports, baselines=[r for r in reports if r != "FlowFM"])]
            plots[f"{mode}_{regime}"] = str(bar_plot(reports, out / f"{stem}_{mode}_{regime}.png",
                                                     baselines=[r for r in reports if r != "FlowFM"]))
    if ttq is not None:
        sections += ["## Training time to quality (linear probe, all labels)", "",
                     time_to_quality_markdown(ttq)]
    markdown = "\n".join(sections)
    atomic_write_text(out / f"{stem}.md", markdown)
    summary = {"config": asdict(cfg), "environment": environment(), "results": results, "time_to_quality": ttq,
               "plots": plots, "seconds": time.perf_counter() - t0}
    write_json(out / f"{stem}.json", summary)
    log(markdown)
    return summary


def _pretraining_scope(cfg: CompareConfig) -> str:
    """Which windows pretraining saw, in the words of compare.md."""
    if cfg.split == "design":
        return "pretraining on the design subjects only (no report subject's window)"
    if cfg.inductive:
        return ("pretraining inductive: without any evaluated subject's window" if cfg.split is not None else
                "pretraining inductive: per fold, without that fold's test subjects")
    return "pretraining transductive: all windows, labels unused (test subjects' unlabelled windows included)"


def time_to_quality_markdown(ttq: dict) -> str:
    lines = [f"Target: {ttq['baseline']}'s final linear-probe macro-F1 (same seed); time = cumulative training wall "
             f"time up to the first probed checkpoint at or above it. Seconds depend on the machine's load while each "
             f"run trained; the epoch ratio does not (both methods cost the same per step).", "",
             f"| seed | target F1 | {ttq['method']}: epoch / s | {ttq['baseline']}: epoch / s | time ratio | "
             f"epoch ratio |", "|---|---|---|---|---|---|"]
    for r in ttq["per_seed"]:
        res = r["result"]
        m = "not reached" if res["method"] is None else f"{res['method']['epoch']} / {res['method']['seconds']:.0f}"
        b = f"{res['baseline']['epoch']} / {res['baseline']['seconds']:.0f}"
        ratio = "-" if res["time_ratio"] is None else f"{res['time_ratio']:.2f}"
        eratio = "-" if res["epoch_ratio"] is None else f"{res['epoch_ratio']:.2f}"
        lines.append(f"| {r['seed']} | {res['target']:.3f} | {m} | {b} | {ratio} | {eratio} |")
    mean, emean = ttq["time_ratio_mean"], ttq["epoch_ratio_mean"]
    lines += ["", f"Reached in {ttq['reached']}/{len(ttq['per_seed'])} seeds; over those, mean time ratio "
                  f"{'-' if mean is None else f'{mean:.2f}'}, mean epoch ratio "
                  f"{'-' if emean is None else f'{emean:.2f}'} (target <= 0.50, docs/design.md §1)."]
    return "\n".join(lines) + "\n"


def write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str))


def _machine() -> str:
    env = environment()
    return f"{env['device_name']}, torch {env['torch']}, {env['torch_threads']} torch thread(s)"
