"""``flowfm.evaluation.generation_sweep`` and ``flowfm evaluate-generation`` on tiny random-weight models and tiny
synthetic labelled data: fields present, NFE counted by flowfm.solvers.nfe, one conditioning set and noise for
every setting, plot and markdown written, clear errors for samplers the given checkpoints do not have."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM
from flowfm.cli import main as cli_main
from flowfm.config import FlowFMConfig
from flowfm.data import WindowDataset
from flowfm.data.folder import save_folder
from flowfm.evaluation.generation_sweep import (conditioning_split, flow_settings, generation_sweep,
                                                sweep_markdown, write_sweep)
from flowfm.model import FlowFM

L, T_DIFF = 64, 20
ROW_KEYS = ("model", "method", "steps", "nfe", "seconds", "windows_per_s", "frechet", "discriminative_score",
            "tstr_macro_f1", "reconstruction_corr", "conditioning_sha256", "noise_seeds")


def synthetic(n_subjects=6, per_subject=10, seed=0) -> WindowDataset:
    """3 activities = 3 frequencies around gravity on z; labels and subject ids."""
    r = np.random.default_rng(seed)
    n = n_subjects * per_subject
    y = r.integers(0, 3, n)
    t = np.arange(L) / 30.0
    f = np.array([1.0, 3.0, 6.0])[y][:, None, None]
    x = np.array([0.0, 0.0, 1.0])[None, :, None] + 0.4 * np.sin(2 * np.pi * f * t + r.uniform(0, 6, (n, 3, 1)))
    x = x + 0.05 * r.standard_normal((n, 3, L))
    return WindowDataset(x=x.astype(np.float32), pid=np.repeat(np.arange(1, n_subjects + 1), per_subject), y=y)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    torch.manual_seed(0)
    FlowFM(FlowFMConfig(preset="tiny", window=L)).save(root / "flow")
    DiffusionFM(DiffusionConfig(preset="tiny", window=L, T=T_DIFF)).save(root / "diff")
    save_folder(synthetic(), root / "data")
    return root


@pytest.fixture(scope="module")
def result(ckpts):
    return generation_sweep([ckpts / "flow", ckpts / "diff"], synthetic(), n=20, nfe=(1, 2, 4), ddim=(2, 5),
                            ddpm=True, seed=3, batch_size=8, test_fraction=0.34, progress=None)


def test_flow_settings_count_nfe():
    settings, skipped = flow_settings((1, 2, 4, 8), ("euler", "heun"))
    got = {(s.method, s.steps): s.nfe for s in settings}
    assert got == {("euler", 1): 1, ("euler", 2): 2, ("euler", 4): 4, ("euler", 8): 8,
                   ("heun", 1): 2, ("heun", 2): 4, ("heun", 4): 8}
    assert len(skipped) == 1 and "heun at NFE 1" in skipped[0]["setting"] and "2 evaluations" in skipped[0]["reason"]


def test_split_is_subject_wise():
    cond = conditioning_split(synthetic(), n=15, seed=1, test_fraction=0.34)
    assert len(cond.x) == 15 and len(cond.test_subjects) == 2 and len(cond.train_subjects) == 4
    assert set(cond.pid) <= set(cond.train_subjects)
    assert not set(cond.train_subjects) & set(cond.test_subjects)
    assert len(cond.test_x) == 20 and conditioning_split(synthetic(), n=15, seed=1, test_fraction=0.34).sha256 == \
        cond.sha256


def test_rows_fields_and_nfe(result):
    rows = result["rows"]
    got = {(r["model"], r["method"], r["steps"], r["nfe"]) for r in rows}
    assert got == {("flowfm", "euler", 1, 1), ("flowfm", "euler", 2, 2), ("flowfm", "euler", 4, 4),
                   ("flowfm", "heun", 1, 2), ("flowfm", "heun", 2, 4), ("diffusion", "ddim", 2, 2),
                   ("diffusion", "ddim", 5, 5), ("diffusion", "ddpm", T_DIFF, T_DIFF)}
    for r in rows:
        for key in ROW_KEYS:
            assert key in r, key
        assert r["n"] == 20 and r["seconds"] > 0 and np.isfinite(r["frechet"])
        assert 0 <= r["discriminative_score"] <= 0.5 and 0 <= r["tstr_macro_f1"] <= 1
        assert r["speedup_vs_ddpm"] > 0 and isinstance(r["ffd_le_ddpm"], bool)
    assert [s["setting"] for s in result["skipped"]] == ["heun at NFE 1"]
    ref = result["reference"]
    assert 0 <= ref["trtr_macro_f1"] <= 1 and np.isfinite(ref["real_vs_real_frechet"])
    for key in ("conditioning", "environment", "nfe_counting", "models"):
        assert result[key]
    assert "heun 2 per step" in result["nfe_counting"]


def test_settings_share_conditioning_and_noise(result):
    rows = result["rows"]
    assert {r["conditioning_sha256"] for r in rows} == {result["conditioning"]["sha256"]}
    assert len({tuple(r["noise_seeds"]) for r in rows}) == 1 and len(rows[0]["noise_seeds"]) == 3  # 20 / 8


def test_write_sweep(result, tmp_path):
    paths = write_sweep(result, tmp_path / "out")
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    text = paths["markdown"].read_text()
    assert text == sweep_markdown(result) and "| flowfm | heun | 2 | 4 |" in text and "TRTR" in text
    assert "x faster than DDPM-1000" in text


def test_flow_checkpoint_with_ddim_is_an_error(ckpts):
    with pytest.raises(ValueError, match="ddim=.*no diffusion model"):
        generation_sweep([ckpts / "flow"], synthetic(), n=10, ddim=[10], progress=None)
    with pytest.raises(ValueError, match="nfe=.*no flowfm model"):
        generation_sweep([ckpts / "diff"], synthetic(), n=10, nfe=[2], progress=None)


def test_cli(ckpts, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["evaluate-generation", "--flow", str(ckpts / "flow"), "--diffusion", str(ckpts / "diff"),
                   "--data", str(ckpts / "data"), "--n", "12", "--nfe", "2", "--ddim", "3", "--no-ddpm",
                   "--batch-size", "6", "--test-fraction", "0.34", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "generation_sweep.json").read_text())
    assert {(r["method"], r["nfe"]) for r in doc["rows"]} == {("euler", 2), ("heun", 2), ("ddim", 3)}
    assert (out / "generation_sweep_quality_vs_time.png").is_file() and (out / "generation_sweep.md").is_file()
    assert "| diffusion | ddim | 3 | 3 |" in capsys.readouterr().out
    # a flow checkpoint with --ddim: a clear error, exit code 2, nothing written
    rc = cli_main(["evaluate-generation", "--checkpoint", str(ckpts / "flow"), "--data", str(ckpts / "data"),
                   "--ddim", "10", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "no diffusion model" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    rc = cli_main(["evaluate-generation", "--flow", str(ckpts / "diff"), "--data", str(ckpts / "data"),
                   "--out", str(tmp_path / "bad")])
    assert rc == 2 and "holds a 'diffusion' model" in capsys.readouterr().err
