"""The fixed design / report subject split, and evaluation / comparison restricted to one part of it."""
import json
from pathlib import Path

import numpy as np
import pytest

from flowfm.evaluation.subject_split import design_report_split, parse_subject_ids, subject_mask


def test_hapt_report_subjects_are_every_third_id():
    pid = np.repeat(np.arange(1, 31), 4)
    split = design_report_split(np.random.default_rng(0).permutation(pid))
    assert [int(s) for s in split["report"]] == list(range(3, 31, 3))
    assert sorted(int(s) for s in split["design"]) == [s for s in range(1, 31) if s % 3]


def test_integer_like_text_ids_sort_numerically_and_other_text_alphabetically():
    assert design_report_split(np.array(["10", "2", "1", "3", "20", "4"]))["report"] == ["3", "20"]
    assert design_report_split(np.array(["p-b", "p-a", "p-c", "p-d"]))["report"] == ["p-c"]


def test_fewer_than_three_subjects_is_refused():
    with pytest.raises(ValueError, match="at least 3 subjects, found 2"):
        design_report_split(np.array([1, 1, 2]))


def test_mask_combines_split_subjects_and_exclusions():
    pid = np.repeat(np.arange(1, 10), 2)
    report = subject_mask(pid, split="report")
    assert set(pid[report]) == {3, 6, 9}
    assert set(pid[subject_mask(pid, split="design", exclude=["1"])]) == {2, 4, 5, 7, 8}
    assert set(pid[subject_mask(pid, subjects=parse_subject_ids("2, 3"))]) == {2, 3}


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="test"), "split must be one of design, report"),
    (dict(subjects=["42"]), r"subject\(s\) 42 are not in the data"),
    (dict(split="report", subjects=["1"]), "leaves no windows"),
])
def test_bad_selections_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        subject_mask(np.repeat(np.arange(1, 10), 2), **kwargs)


def test_an_empty_id_list_is_refused():
    with pytest.raises(ValueError, match="comma-separated list of subject ids"):
        parse_subject_ids(" , ")


@pytest.fixture(scope="module")
def nine_subjects(tmp_path_factory):
    from flowfm.data import WindowDataset, save_folder

    rng = np.random.default_rng(1)
    t = np.arange(48) / 30.0
    xs, ys, pids = [], [], []
    for subject in range(1, 10):
        for label, freq in enumerate((0.8, 3.0)):
            for _ in range(6):
                x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3)) * np.array([[1.0], [0.5], [0.2]])
                xs.append(x + 0.1 * rng.standard_normal((3, 48)) + np.array([[0.0], [0.0], [1.0]]))
                ys.append(label)
                pids.append(subject)
    folder = tmp_path_factory.mktemp("nine") / "data"
    save_folder(WindowDataset(np.stack(xs).astype(np.float32), pid=np.array(pids), y=np.array(ys)), folder)
    return folder


def test_cli_evaluate_on_the_report_split_sees_only_report_subjects(nine_subjects, tmp_path):
    import csv

    from flowfm.cli import main

    out = tmp_path / "rep"
    rc = main(["evaluate", "--data", str(nine_subjects), "--encoder", "random", "--preset", "tiny", "--split",
               "report", "--folds", "3", "--quiet", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["subjects"] == ["3", "6", "9"]
    with open(f"{out}_predictions.csv") as f:
        assert {row["pid"] for row in csv.DictReader(f)} == {"3", "6", "9"}


def test_compare_on_the_report_split_pretrains_without_any_report_subject(nine_subjects, tmp_path):
    from flowfm.compare import CompareConfig, run_compare

    cfg = CompareConfig(data=str(nine_subjects), out=str(tmp_path / "cmp"), methods=("flowfm",), seeds=1, epochs=1,
                        batch_size=16, warmup_steps=2, preset="tiny", label_subjects=(None,), draws=1, folds=3,
                        split="report", inductive=True)
    summary = run_compare(cfg, log=lambda *_: None)
    run = Path(cfg.out) / "pretrain" / "flowfm" / "seed_0"
    assert json.loads((run / "data.json").read_text())["exclude_subjects"] == "3,6,9"
    assert (run / "model" / "config.json").is_file() and not list(run.glob("fold_*"))
    report = summary["results"]["linear"]["all"]["FlowFM"]
    assert report["subjects"] == ["3", "6", "9"]
    assert summary["results"]["linear"]["all"]["random init (frozen)"]["subjects"] == ["3", "6", "9"]
    md = (Path(cfg.out) / "compare.md").read_text()
    assert "report subjects (3, 6, 9)" in md and "without any evaluated subject's window" in md
    assert summary["time_to_quality"] is None   # diffusion not in methods


def test_compare_rejects_an_unknown_split():
    from flowfm.compare import CompareConfig

    with pytest.raises(ValueError, match="split must be one of design, report"):
        CompareConfig(split="holdout")


@pytest.mark.parametrize("split, inductive, excluded", [("design", False, "3,6,9"), ("report", False, None)])
def test_design_work_never_pretrains_on_report_subjects(nine_subjects, tmp_path, split, inductive, excluded):
    from flowfm.compare import CompareConfig, run_compare

    cfg = CompareConfig(data=str(nine_subjects), out=str(tmp_path / "cmp"), methods=("ssl-wearables",), seeds=1,
                        epochs=1, batch_size=16, warmup_steps=2, preset="tiny", label_subjects=(None,), draws=1,
                        folds=3, split=split, inductive=inductive, time_to_quality=False)
    summary = run_compare(cfg, log=lambda *_: None)
    record = json.loads((Path(cfg.out) / "pretrain" / "ssl-wearables" / "seed_0" / "data.json").read_text())
    assert record["exclude_subjects"] == excluded   # a transductive report run pretrains on every window
    evaluated = ["1", "2", "4", "5", "7", "8"] if split == "design" else ["3", "6", "9"]
    assert summary["results"]["linear"]["all"]["SSL-Wearables"]["subjects"] == evaluated


def test_design_split_is_not_inductive():
    from flowfm.compare import CompareConfig

    with pytest.raises(ValueError, match="design subjects"):
        CompareConfig(split="design", inductive=True)


def test_a_variant_with_a_bad_flag_fails_before_any_pretraining():
    from flowfm.compare import CompareConfig

    with pytest.raises(ValueError, match="variant 'typo'.*--t-sampel"):
        CompareConfig(variants={"typo": ["--method", "flowfm", "--t-sampel", "uniform"]})
