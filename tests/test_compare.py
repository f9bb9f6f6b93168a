"""``flowfm compare``: every method pretrained per seed, evaluated with paired rows, resumable, tables consistent."""
import json
from pathlib import Path

import numpy as np
import pytest

from flowfm.compare import CompareConfig, run_compare, verdict_table
from flowfm.data import WindowDataset, save_folder


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    length, t = 48, np.arange(48) / 30.0
    xs, ys, pids = [], [], []
    for subject in range(6):
        for label, freq in enumerate((0.8, 3.0)):
            for _ in range(8):
                x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3)) * np.array([[1.0], [0.5], [0.2]])
                xs.append(x + 0.1 * rng.standard_normal((3, length)) + np.array([[0.0], [0.0], [1.0]]))
                ys.append(label)
                pids.append(subject)
    data = root / "data"
    save_folder(WindowDataset(np.stack(xs).astype(np.float32), pid=np.array(pids), y=np.array(ys)), data)
    cfg = CompareConfig(data=str(data), out=str(root / "out"), seeds=2, epochs=2, batch_size=16, warmup_steps=2,
                        preset="tiny", modes=("linear", "finetune"), label_subjects=(None, 2),
                        finetune_label_subjects=(2,), draws=1, folds=3,
                        variants={"FlowFM identical view": ["--method", "flowfm", "--encoder-view", "identical"]})
    return cfg, run_compare(cfg, log=lambda *_: None)


def test_every_method_and_baseline_row_is_evaluated(compare_run):
    cfg, summary = compare_run
    results = summary["results"]
    assert set(results) == {"linear", "finetune"}
    assert set(results["linear"]) == {"all", "k2"} and set(results["finetune"]) == {"k2"}
    pretrained = {"FlowFM", "diffusion", "SSL-Wearables", "FlowFM identical view"}
    assert set(results["linear"]["all"]) == pretrained | {"random init (frozen)"}
    assert set(results["finetune"]["k2"]) == pretrained | {"supervised from scratch"}
    assert results["finetune"]["k2"]["supervised from scratch"]["mode"] == "scratch"
    for regimes in results.values():
        for reports in regimes.values():
            for report in reports.values():
                assert report["seeds"] == [0, 1]
    assert len(summary["time_to_quality"]["per_seed"]) == 2
    from flowfm.checkpoint import load_model

    variant = load_model(Path(cfg.out) / "pretrain" / "FlowFM identical view" / "seed_1" / "model")
    assert variant.method == "flowfm" and variant.config.encoder_view == "identical"
    out = cfg.out
    for name in ("compare.json", "compare.md", "compare_linear_all.png", "time_to_quality.json"):
        assert (Path(out) / name).is_file(), name


def test_verdicts_are_the_paired_differences_of_the_reports(compare_run):
    _, summary = compare_run
    flow = summary["results"]["linear"]["all"]["FlowFM"]
    rand = summary["results"]["linear"]["all"]["random init (frozen)"]
    diffs = [f["draws"][0]["macro_f1"] - r["draws"][0]["macro_f1"] for f, r in zip(flow["per_seed"], rand["per_seed"])]
    table = verdict_table(summary["results"])
    line = next(row for row in table.splitlines() if row.startswith("| linear | all |"))
    cells = [c.strip() for c in line.strip("|").split("|")][2:]
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")][2:]
    cell = cells[header.index("FlowFM - random init (frozen)")]
    assert cell.startswith(f"{np.mean(diffs):+.3f} ± {np.std(diffs, ddof=1):.3f}")


def test_a_second_run_reuses_pretrained_models_and_reports(compare_run, monkeypatch):
    cfg, first = compare_run
    import flowfm.cli
    import flowfm.evaluation

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished step was recomputed")

    monkeypatch.setattr(flowfm.cli, "main", forbidden)
    monkeypatch.setattr(flowfm.evaluation, "evaluate_encoder", forbidden)
    second = run_compare(cfg, log=lambda *_: None, resume=True)
    assert json.dumps(second["results"], sort_keys=True) == json.dumps(first["results"], sort_keys=True)


def test_a_used_out_needs_resume_and_the_same_settings(compare_run):
    from dataclasses import replace

    from flowfm.run_folder import RunFolderError

    cfg, _ = compare_run
    before = {p: p.stat().st_mtime_ns for p in Path(cfg.out).rglob("*")}
    with pytest.raises(RunFolderError, match="already holds a comparison; give --resume"):
        run_compare(cfg, log=lambda *_: None)
    with pytest.raises(ValueError, match="epochs 2 -> 3.*preset 'tiny' -> 'small'"):
        run_compare(replace(cfg, epochs=3, preset="small"), log=lambda *_: None, resume=True)
    with pytest.raises(ValueError, match="variant 'FlowFM identical view'"):
        run_compare(replace(cfg, variants={"FlowFM identical view": ["--method", "flowfm"]}), log=lambda *_: None,
                    resume=True)
    assert {p: p.stat().st_mtime_ns for p in Path(cfg.out).rglob("*")} == before


def test_evaluate_only_refuses_to_pretrain(compare_run, tmp_path):
    from dataclasses import replace

    cfg, _ = compare_run
    with pytest.raises(FileNotFoundError, match="evaluate-only"):
        run_compare(replace(cfg, out=str(tmp_path / "fresh"), evaluate_only=True), log=lambda *_: None)


def test_stages_readout_has_its_own_cache_and_outputs(compare_run):
    from dataclasses import replace

    cfg, first = compare_run
    with pytest.raises(ValueError, match="readout='pool'"):
        replace(cfg, readout="pool")
    out = Path(cfg.out)
    z_path = out / "eval" / "linear" / "all" / "FlowFM.json"
    z_before, compare_before = z_path.read_text(), (out / "compare.json").read_text()
    assert json.loads(z_before)["readout"] == "z"
    stages = run_compare(replace(cfg, readout="stages", modes=("linear", "finetune"), label_subjects=(None,)),
                         log=lambda *_: None, resume=True)
    report = json.loads((out / "eval" / "linear_stages" / "all" / "FlowFM.json").read_text())
    assert report["readout"] == "stages" and stages["results"]["linear"]["all"]["FlowFM"]["readout"] == "stages"
    # finetune reads z whatever the readout: its cached reports (OUT/eval/finetune/...) are reused unchanged
    assert not (out / "eval" / "finetune_stages").exists()
    assert stages["results"]["finetune"] == first["results"]["finetune"]
    assert z_path.read_text() == z_before and (out / "compare.json").read_text() == compare_before
    assert (out / "compare_stages.json").is_file() and (out / "compare_stages_linear_all.png").is_file()
    assert "frozen-feature readout stages" in (out / "compare_stages.md").read_text()


def test_cli_compare_passes_the_readout(compare_run):
    from flowfm.cli import main

    cfg, _ = compare_run
    assert main(["compare", "--data", cfg.data, "--out", cfg.out, "--seeds", "2", "--epochs", "2", "--preset", "tiny",
                 "--modes", "linear", "--label-subjects", "all", "--draws", "1", "--folds", "3", "--evaluate-only",
                 "--skip-time-to-quality", "--readout", "stages"]) == 0
    summary = json.loads((Path(cfg.out) / "compare_stages.json").read_text())
    assert summary["config"]["readout"] == "stages"
    assert {r["readout"] for r in summary["results"]["linear"]["all"].values()} == {"stages"}


def test_inductive_pretraining_never_sees_the_fold_test_subjects(compare_run, tmp_path):
    from dataclasses import replace

    from flowfm.data.corpus import open_corpus
    from flowfm.data.folder import load_folder
    from flowfm.evaluation import subject_folds

    cfg, _ = compare_run
    icfg = replace(cfg, out=str(tmp_path / "inductive"), methods=("flowfm",), variants={}, seeds=1, epochs=1,
                   modes=("linear",), label_subjects=(None,), inductive=True)
    summary = run_compare(icfg, log=lambda *_: None)
    labelled = load_folder(cfg.data).labelled()
    all_pids = set(open_corpus([cfg.data]).subject_ids().tolist())
    for fold, (_, test) in enumerate(subject_folds(labelled.pid, cfg.folds)):
        run = Path(icfg.out) / "pretrain" / "flowfm" / "seed_0" / f"fold_{fold}"
        record = json.loads((run / "data.json").read_text())
        excluded = {int(s) for s in record["exclude_subjects"].split(",")}
        assert excluded == set(np.unique(labelled.pid[test]).tolist()) and excluded < all_pids
        assert (run / "model" / "config.json").is_file()
    report = summary["results"]["linear"]["all"]["FlowFM"]
    assert report["pretraining"].startswith("per fold")
    assert summary["results"]["linear"]["all"]["random init (frozen)"]["pretraining"] == "one model for all folds"
    assert summary["time_to_quality"] is None and "inductive" in (Path(icfg.out) / "compare.md").read_text()


def test_a_variant_with_fewer_seeds_is_evaluated_on_the_seeds_it_has(compare_run, tmp_path):
    import shutil
    from dataclasses import replace

    cfg, first = compare_run
    out = tmp_path / "partial"
    shutil.copytree(Path(cfg.out) / "pretrain", out / "pretrain")
    shutil.rmtree(out / "pretrain" / "FlowFM identical view" / "seed_1")
    partial = run_compare(replace(cfg, out=str(out), evaluate_only=True, modes=("linear",), label_subjects=(None,)),
                          log=lambda *_: None)
    reports = partial["results"]["linear"]["all"]
    assert reports["FlowFM identical view"]["seeds"] == [0] and reports["FlowFM"]["seeds"] == [0, 1]
    seed0 = first["results"]["linear"]["all"]["FlowFM identical view"]["per_seed"][0]
    assert reports["FlowFM identical view"]["per_seed"][0]["macro_f1"] == seed0["macro_f1"]
    markdown = (out / "compare.md").read_text()
    assert "pretrained for seeds [0] only; its rows" in markdown
    variant_args = " ".join(cfg.variants["FlowFM identical view"])
    assert f"Variant FlowFM identical view adds `{variant_args}` after the shared arguments" in markdown
    shutil.rmtree(out / "pretrain" / "flowfm" / "seed_1")          # a method (not a variant) must be complete
    with pytest.raises(FileNotFoundError, match="evaluate-only"):
        run_compare(replace(cfg, out=str(out), evaluate_only=True, modes=("linear",), label_subjects=(None,)),
                    log=lambda *_: None)
