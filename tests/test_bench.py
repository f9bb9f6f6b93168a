"""Smoke tests of the benchmark suites (bench/): each suite's --quick run on CPU writes JSON with the expected
fields, finite positive timings and every unavailable backend listed with a reason; render turns it into markdown."""
from __future__ import annotations

import json
import math

import pytest

from bench import common, kernels, render, sampling, training

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
    assert "no 'cuda' implementation" in missing[("conv_block_fwd", "cuda")]
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
