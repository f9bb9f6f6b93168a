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
    second = run_compare(cfg, log=lambda *_: None)
    assert json.dumps(second["results"], sort_keys=True) == json.dumps(first["results"], sort_keys=True)


def test_evaluate_only_refuses_to_pretrain(compare_run, tmp_path):
    from dataclasses import replace

    cfg, _ = compare_run
    with pytest.raises(FileNotFoundError, match="evaluate-only"):
        run_compare(replace(cfg, out=str(tmp_path / "fresh"), evaluate_only=True), log=lambda *_: None)
