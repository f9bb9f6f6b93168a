"""Smoke tests of the benchmark suites (bench/): each suite's --quick run on CPU writes JSON with the expected
fields, finite positive timings and every unavailable backend listed with a reason; with tiny checkpoints the sampling
rows carry generation quality; render turns the JSON into markdown and plots and keeps README's bench block in step
with the committed JSON; ``flowfm bench NAME`` dispatches to the suites."""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import common, kernels, render, sampling, training
from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM
from flowfm.cli import bench_module, main as cli_main
from flowfm.config import FlowFMConfig
from flowfm.data import WindowDataset
from flowfm.data.folder import save_folder
from flowfm.model import FlowFM

REPO = Path(__file__).resolve().parent.parent

CPU = ["--device", "cpu", "--threads", "1"]
TIMING_KEYS = ("median_ms", "p20_ms", "p80_ms", "first_call_ms")


def _check_timings(row: dict) -> None:
    for key in TIMING_KEYS:
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    assert row["p20_ms"] <= row["median_ms"] <= row["p80_ms"]
    assert row["repeats"] >= 1


def _check_env(doc: dict, suite: str) -> None:
    assert doc["suite"] == suite and doc["device"] == "cpu" and doc["quick"] is True
    env = doc["environment"]
    for key in ("device_name", "torch", "triton", "cuda", "git_commit", "cpu_count", "torch_threads"):
        assert key in env
    assert env["torch_threads"] == 1


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    kernels.main(["--quick", "--out", str(out), "--repeats", "3", "--compile", "auto", *CPU])
    sampling.main(["--quick", "--out", str(out), "--repeats", "2", "--preset", "tiny", *CPU])
    training.main(["--quick", "--out", str(out), "--repeats", "2", *CPU])
    return out


def test_timing_helper_percentiles():
    s = common.summarize_ms([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median_ms"] == 3.0 and s["p20_ms"] == pytest.approx(1.8) and s["p80_ms"] == pytest.approx(4.2)
    import torch

    t = common.time_fn(lambda: torch.ones(4).sum(), torch.device("cpu"), warmup=1, repeats=4)
    assert t["repeats"] == 4 and t["median_ms"] > 0


def test_kernels_json(results):
    doc = json.loads((results / "kernels_cpu.json").read_text())
    _check_env(doc, "kernels")
    assert doc["ceilings"]["copy_gbps"] > 0 and doc["ceilings"]["matmul_fp32_tflops"] > 0
    cases = {r["case"] for r in doc["rows"]}
    assert cases == set(kernels.CASES)
    for r in doc["rows"]:
        _check_timings(r)
        assert r["bytes"] > 0 and r["flops"] > 0 and r["gbps"] > 0 and r["tflops"] > 0
        assert r["backend"] == "eager" and r["speedup_vs_eager"] == pytest.approx(1.0)
    # triton / cuda / compile cannot run on CPU here: each listed, per case, with a reason
    missing = {(u["case"], u["backend"]): u["reason"] for u in doc["unavailable"]}
    for case in kernels.CASES:
        for backend in ("triton", "cuda", "compile"):
            assert missing.get((case, backend)), (case, backend)
    assert "CUDA tensor" in missing[("conv_block_fwd", "cuda")]  # the conv block has a cuda path (cuDNN + C++ GN)
    assert doc["available_backends"]["eager"] is None
    assert doc["available_backends"]["cuda"]


def test_sampling_json(results):
    doc = json.loads((results / "sampling_cpu.json").read_text())
    _check_env(doc, "sampling")
    assert "random" in doc["weights"]
    keys = {(r["model"], r["method"], r["steps"], r["batch"]) for r in doc["rows"]}
    for b in (1, 8):
        assert ("flowfm", "euler", 2, b) in keys and ("diffusion", "ddim", 4, b) in keys
    for r in doc["rows"]:
        _check_timings(r)
        assert r["windows_per_s"] > 0 and r["nfe"] >= r["steps"] and r["cuda_graph"] is False
        assert r["speedup_vs_reference"] > 0 and "DDPM-1000 not run" in r["speedup_reference"]
    reasons = " ".join(u["reason"] for u in doc["unavailable"])
    assert "CUDA" in reasons and "quick" in reasons


def test_no_diffusion_row_claims_a_cuda_graph(tmp_path, monkeypatch):
    """The diffusion baseline samples through its own generate(), which fast_sample returns before the CUDA-graph
    path: with graphs "on" (a fake CPU graph runtime stands in for CUDA), FlowFM rows replay a graph, and the
    diffusion setting is listed as having none instead of being timed eagerly under a "CUDA graph" label."""
    from tests.cuda_graph_fakes import FakeRuntime

    from flowfm_kernels import graphs

    monkeypatch.setattr(graphs, "_runtime", FakeRuntime())
    monkeypatch.delenv("FLOWFM_CUDA_GRAPH", raising=False)
    monkeypatch.setattr(sampling, "graph_modes", lambda device: [False, True])
    graphs.clear()
    try:
        doc = sampling.main(["--quick", "--out", str(tmp_path), "--repeats", "2", "--preset", "tiny",
                             "--batches", "1", *CPU])
    finally:
        graphs.clear()
    rows = doc["rows"]
    flow_graph = [r for r in rows if r["model"] == "flowfm" and r["cuda_graph"]]
    assert {(r["method"], r["steps"]) for r in flow_graph} == {("euler", 2), ("heun", 2)}
    assert all(r["graph_hits"] > 0 and r["speedup_graph_vs_eager_loop"] > 0 for r in flow_graph)
    assert [r["cuda_graph"] for r in rows if r["model"] == "diffusion"] == [False]  # DDIM-4, eager only
    missing = [u for u in doc["unavailable"] if u["what"] == "diffusion ddim-4 batch 1 cuda_graph=True"]
    assert len(missing) == 1 and "bypasses the graph path" in missing[0]["reason"]


@pytest.mark.parametrize("path", sorted((REPO / "bench" / "results").glob("sampling_*.json")), ids=lambda p: p.name)
def test_committed_sampling_rows_claim_a_graph_only_when_one_replayed(path):
    for r in json.loads(path.read_text())["rows"]:
        if r["cuda_graph"]:
            assert r["model"] != "diffusion" and r["graph_hits"] > 0, r


def test_training_json(results):
    doc = json.loads((results / "training_cpu.json").read_text())
    _check_env(doc, "training")
    assert doc["preset"] == "tiny" and doc["batch"] == 8
    assert {r["model"] for r in doc["rows"]} == {"flowfm", "diffusion", "ssl_wearables"}
    for r in doc["rows"]:
        _check_timings(r)
        assert r["windows_per_s"] > 0 and r["parameters"] > 0 and r["peak_memory_mib"] is None


def test_render(results, capsys):
    text = render.main(["--results", str(results)])
    assert (results / "README.md").read_text() == text
    for suite in ("kernels", "sampling", "training"):
        assert f"## {suite} (cpu)" in text
    assert "| gn_film_silu_fwd | eager |" in text and "Not measured:" in text
    assert "- `triton` (" in text  # listed as not measured, with its reason (no CUDA / interpreter only)
    assert capsys.readouterr().out.strip()


# ------------------------------------------------------------------------------------ quality, README, CLI dispatch
def _tiny_data(n_subjects=6, per_subject=10, length=64) -> WindowDataset:
    r = np.random.default_rng(0)
    y = r.integers(0, 3, n_subjects * per_subject)
    t = np.arange(length) / 30.0
    x = np.array([0.0, 0.0, 1.0])[None, :, None] + 0.4 * np.sin(
        2 * np.pi * np.array([1.0, 3.0, 6.0])[y][:, None, None] * t + r.uniform(0, 6, (len(y), 3, 1)))
    return WindowDataset(x=x.astype(np.float32), pid=np.repeat(np.arange(n_subjects), per_subject), y=y)


@pytest.fixture(scope="module")
def quality_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_quality")
    torch.manual_seed(0)
    FlowFM(FlowFMConfig(preset="tiny", window=64)).save(root / "flow")
    DiffusionFM(DiffusionConfig(preset="tiny", window=64, T=12)).save(root / "diff")
    save_folder(_tiny_data(), root / "data")
    out = root / "results"
    sampling.main(["--quick", "--out", str(out), "--repeats", "2", "--ddpm", "--batches", "1,4",
                   "--flow-checkpoint", str(root / "flow"), "--diffusion-checkpoint", str(root / "diff"),
                   "--data", str(root / "data"), "--quality-n", "20", "--quality-batch", "8", *CPU])
    return out


def test_sampling_quality_columns(quality_results):
    doc = json.loads((quality_results / "sampling_cpu.json").read_text())
    assert doc["checkpoints"]["flowfm"] and doc["checkpoints"]["diffusion"] and "trained" in doc["weights"]
    keys = {(r["model"], r["method"], r["steps"]) for r in doc["rows"]}
    assert keys == {("flowfm", "euler", 2), ("flowfm", "heun", 2), ("diffusion", "ddim", 4),
                    ("diffusion", "ddpm", 12)}
    for r in doc["rows"]:
        assert r["quality"] == "measured" and r["quality_n"] == 20
        assert math.isfinite(r["frechet"]) and 0 <= r["discriminative_score"] <= 0.5
        assert r["speedup_reference"] == "ddpm-12 (eager loop)" and isinstance(r["frechet_le_reference"], bool)
    # quality does not depend on the timing batch: measured once per setting
    by_setting = {}
    for r in doc["rows"]:
        by_setting.setdefault((r["model"], r["method"], r["steps"]), set()).add(r["frechet"])
    assert all(len(v) == 1 for v in by_setting.values())
    assert [e["batch"] for e in doc["equal_quality"]] == [1, 4]
    assert doc["quality_setup"]["conditioning"]["n"] == 20


def test_sampling_random_weights_have_no_quality(results):
    doc = json.loads((results / "sampling_cpu.json").read_text())
    assert all(r["frechet"] is None and r["quality"] == "n/a (random weights)" for r in doc["rows"])
    assert "equal_quality" not in doc


def test_render_plots_and_readme(results, quality_results, tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(results, folder)
    shutil.copy(quality_results / "sampling_cpu.json", folder / "sampling_cpu.json")
    readme = tmp_path / "README.md"
    original = "# Title\n\n## Performance\n\ntext\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\n## Next\n"
    readme.write_text(original)
    render.main(["--results", str(folder), "--readme", str(readme)])
    text = readme.read_text()
    head, tail = original.split("<!-- bench:begin -->")[0], original.split("<!-- bench:end -->")[1]
    assert text.startswith(head) and text.endswith(tail) and "old" not in text
    block = render.current_block(text)
    assert "| target (design §7) | measured | status |" in block
    assert "not measured (no GPU" in block
    assert "x faster at equal or better quality" in block or "no other setting reaches" in block
    assert "torch " in block and "commit `" in block and "results/sampling_cpu_quality.png" in block
    for name in ("sampling_cpu_speedup.png", "sampling_cpu_quality.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    render.main(["--results", str(folder), "--readme", str(readme)])  # idempotent
    assert readme.read_text() == text
    render.main(["--results", str(folder), "--readme", str(readme), "--check"])
    readme.write_text(text.replace("| target", "| targets", 1))
    with pytest.raises(SystemExit, match="out of date"):
        render.main(["--results", str(folder), "--readme", str(readme), "--check"])
    with pytest.raises(ValueError, match="exactly one"):
        render.replace_block("no markers here", "x")


def test_committed_results_block_matches_committed_json():
    """docs/results.md's bench block is what rendering bench/results/*.json gives: regenerate it with
    ``python -m bench.render --doc docs/results.md`` after committing new results."""
    readme = REPO / "docs" / "results.md"
    assert render.current_block(readme.read_text()) == render.readme_block(REPO / "bench" / "results", readme)


def test_cli_bench_dispatch(results, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tables.md"
    assert cli_main(["bench", "render", "--results", str(results), "--out", str(out), "--no-plots"]) == 0
    assert out.read_text().startswith("# FlowFM benchmark results")
    for name in ("bench", "bench.render"):  # as in an installed wheel without the source checkout
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError, match="source checkout"):
        bench_module("render", checkout=tmp_path)
