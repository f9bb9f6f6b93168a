"""``bench/gpu_check.sh`` and what the GPU image needs, checked on CPU so the script cannot rot before a GPU comes.

The script's dry run (``DRY_RUN=1``: every step's plumbing on CPU, tiny sizes, Triton through its interpreter) must
list every step in ``summary.txt`` with its exit code and keep ``$OUT`` within what the device tool returns (at most
8 files, no folder deeper than 2); a tiny ``BUDGET_S`` makes the later steps say ``skipped (budget)``; a step killed
by its cap is reported as timed out and the steps after it still write their results; a TERM to the script keeps
what it has. Also: the CUDA root from the real path of nvcc (the GPU image's toolkit), and NVTX ranges through
``torch.cuda.nvtx`` when the ``nvtx`` package is missing (the GPU image has none).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import pytest
import torch

from flowfm import profiling
from flowfm_kernels.cuda import _build

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"
# the steps issue 15 asks for, in its order (the script may add more; each must be listed too)
REQUIRED_STEPS = ["env", "build", "smoke_triton", "cuda_ops", "graphs", "gpu_tests", "bench_kernels",
                  "bench_sampling", "bench_training"]
ROW = re.compile(r"^(?P<step>\S+)\s+(?P<status>.+?)\s+(?P<exit>-|\d+)\s+(?P<seconds>-|[\d.]+)\s+(?P<cap>-|\d+)\s+"
                 r"(?P<timed_out>yes|no|-)(?:\s+(?P<note>.*))?$")


def _script_steps() -> list[str]:
    match = re.search(r"^STEPS=\((.*?)\)", SCRIPT.read_text(), re.S | re.M)
    assert match, "STEPS=(...) not found in bench/gpu_check.sh"
    return match.group(1).split()


def _run(out: Path, tmp: Path, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, DRY_RUN="1", OUT=str(out), PYTHON=sys.executable, TMPDIR=str(tmp),
                PUBLISH_EVERY_S="2", **{k: str(v) for k, v in env.items()})
    for key in ("ONLY_STEPS", "BUDGET_S"):
        if key not in env:
            full.pop(key, None)
    return subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=timeout)


def _summary(out: Path) -> dict[str, dict]:
    """{step: row} from the step table of summary.txt (header line 'step  status  exit ...' to the first blank)."""
    lines = (out / "summary.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["step", "status", "exit"])
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        m = ROW.match(line)
        assert m, f"unparsable summary row: {line!r}"
        rows[m["step"]] = m.groupdict()
    return rows


def _check_out_limits(out: Path) -> list[Path]:
    entries = list(out.rglob("*"))
    files = [p for p in entries if p.is_file()]
    assert len(files) <= 8, sorted(p.name for p in files)
    for p in entries:
        assert len(p.relative_to(out).parts) <= 3, p  # at most 2 folders deep (the script writes none)
    assert not [p for p in entries if p.is_dir()], "the script keeps $OUT flat"
    assert len([p for p in files if p.suffix == ".json"]) <= 6
    assert not [p for p in files if p.name.startswith(".")], "temporary files left behind"
    return files


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_check")
    t0 = time.perf_counter()
    proc = _run(root / "out", root)
    return root / "out", proc, time.perf_counter() - t0


def test_dry_run_lists_every_step_with_its_exit_code(dry_run):
    out, proc, seconds = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _summary(out)
    steps = _script_steps()
    assert [s for s in REQUIRED_STEPS if s in steps] == REQUIRED_STEPS  # present, in the order
    assert list(rows) == steps
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row)
        assert row["exit"] == "0" and row["timed_out"] == "no" and float(row["seconds"]) >= 0, (name, row)
    text = (out / "summary.txt").read_text()
    assert "mode: dry run" in text and "budget 420 s" in text
    for name in steps:  # the tail of every step's log
        assert f"== {name} (last lines of logs/{name}.log)" in text
    print(f"dry run took {seconds:.0f} s")


def test_dry_run_output_limits_logs_and_json(dry_run):
    out, _, _ = dry_run
    files = _check_out_limits(out)
    names = {p.name for p in files}
    assert {"summary.txt", "logs.tgz", "gpu_smoke_cpu.json", "kernels_cpu.json", "sampling_cpu.json",
            "training_cpu.json"} <= names
    with tarfile.open(out / "logs.tgz") as tar:
        members = set(tar.getnames())
    for name in _script_steps():
        assert f"logs/{name}.log" in members
    assert "logs/gpu_tests.xml" in members and "logs/bench_README.md" in members
    smoke = json.loads((out / "gpu_smoke_cpu.json").read_text())
    assert set(smoke["sections"]) == {"triton", "cuda", "graphs"}
    assert all(s["complete"] for s in smoke["sections"].values())
    triton = smoke["sections"]["triton"]
    # every Triton op ran through the interpreter and matched its float64 eager reference
    assert {r["op"] for r in triton["rows"]} == {"conv_block", "gn_film_silu", "flow_matching_loss", "interpolate",
                                                 "euler_step", "heun_correct", "rk4_combine", "guidance_combine"}
    assert all(r["ok"] and r["median_ms"] > 0 and r["rel_rms_err"] <= r["tol"] for r in triton["rows"]), \
        [r for r in triton["rows"] if not r.get("ok")]
    assert triton["ceilings"]["copy_gbps"] > 0
    cuda = smoke["sections"]["cuda"]
    assert [u["what"] for u in cuda["unavailable"]] == ["cuda (FLOWFM_CUDA_IMPL=ext)", "cuda (FLOWFM_CUDA_IMPL=jit)"]
    graphs = smoke["sections"]["graphs"]
    assert graphs["rows"] and all(r["cuda_graph"] is False and r["median_ms"] > 0 for r in graphs["rows"])


def test_tiny_budget_skips_later_steps(tmp_path):
    """40 s: the build (minimum 30 s) runs, the steps needing more than what is left say 'skipped (budget)'."""
    out = tmp_path / "out"
    proc = _run(out, tmp_path, BUDGET_S=40, ONLY_STEPS="build,bench_ddpm,kernel_tests,bench_compile")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = _summary(out)
    assert list(rows) == _script_steps()
    assert rows["build"]["status"] == "ok" and rows["build"]["exit"] == "0"
    for name in ("bench_ddpm", "kernel_tests", "bench_compile"):
        assert rows[name]["status"] == "skipped (budget)" and rows[name]["exit"] == "-", rows[name]
        assert re.match(r"needs \d+ s, \d+ s left", rows[name]["note"]), rows[name]
    for name in set(rows) - {"build", "bench_ddpm", "kernel_tests", "bench_compile"}:
        assert rows[name]["status"] == "skipped (not selected)"
    _check_out_limits(out)


def test_step_killed_by_its_cap_is_timed_out_and_later_results_are_written(tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = _run(out, tmp_path, ONLY_STEPS="smoke_triton,graphs", CAP_smoke_triton=3)
    assert time.perf_counter() - t0 < 300
    assert proc.returncode == 1  # a step did not finish: not a clean run
    rows = _summary(out)
    killed = rows["smoke_triton"]
    assert killed["status"] == "timed out (cap 3 s)" and killed["exit"] in ("124", "137"), killed
    assert killed["timed_out"] == "yes" and 3 <= float(killed["seconds"]) < 30
    assert rows["graphs"]["status"] == "ok"
    smoke = json.loads((out / "gpu_smoke_cpu.json").read_text())
    assert smoke["sections"]["graphs"]["complete"] and smoke["sections"]["graphs"]["rows"]
    assert not smoke["sections"].get("triton", {}).get("complete")
    with tarfile.open(out / "logs.tgz") as tar:
        assert "logs/smoke_triton.log" in tar.getnames()
    _check_out_limits(out)


def test_terminated_run_keeps_what_it_has(tmp_path):
    """A TERM (the device tool's own limit) stops the running step and rewrites $OUT before exiting."""
    out = tmp_path / "out"
    env = dict(os.environ, DRY_RUN="1", OUT=str(out), PYTHON=sys.executable, TMPDIR=str(tmp_path),
               ONLY_STEPS="smoke_triton,graphs", PUBLISH_EVERY_S="2")
    proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until smoke_triton is running
            if (out / "summary.txt").exists() and "running" in _summary(out)["smoke_triton"]["status"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail("smoke_triton never started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = _summary(out)
    assert rows["build"]["status"] == "skipped (not selected)"
    assert rows["smoke_triton"]["status"].startswith("killed") and rows["smoke_triton"]["timed_out"] == "yes"
    assert rows["graphs"]["status"] == "pending"  # never reached
    _check_out_limits(out)


# ------------------------------------------------------------------------------------ the CUDA root from nvcc
def _toolkit(root: Path, header: bool = True) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n")
    nvcc.chmod(0o755)
    if header:
        (root / "include" / "cuda_runtime_api.h").write_text("")
    return nvcc


def test_cuda_root_from_the_real_path_of_nvcc(tmp_path):
    nvcc = _toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").symlink_to(nvcc)  # as /usr/bin/nvcc -> /usr/local/cuda-13.0/bin/nvcc
    root = str(tmp_path / "cuda-13.0")
    assert _build.find_cuda_root({"PATH": str(tmp_path / "bin")}) == root
    assert _build.find_cuda_root({"NVCC": str(tmp_path / "bin" / "nvcc"), "PATH": ""}) == root
    # CUDA_HOME still wins
    other = tmp_path / "home"
    (other / "include").mkdir(parents=True)
    assert _build.find_cuda_root({"CUDA_HOME": str(other), "PATH": str(tmp_path / "bin")}) == str(other)
    # and the build helper (setup.py's) uses it: root and <root>/bin/nvcc
    decision, found_root, found_nvcc = _build.decide_from_environment(
        {"FLOWFM_BUILD_CUDA": "1", "PATH": str(tmp_path / "bin")})
    assert decision.build and decision.required and found_root == root and found_nvcc == str(nvcc)


def test_a_wrapper_script_is_not_taken_for_a_toolkit(tmp_path):
    """/usr/local/bin/nvcc as a shell wrapper: its real path is itself, and /usr/local has include/ but no CUDA."""
    _toolkit(tmp_path / "local", header=False)
    no_standard = lambda p: str(p).startswith(str(tmp_path))  # noqa: E731 - hide /usr/local/cuda of this machine
    assert _build.find_cuda_root({"PATH": str(tmp_path / "local" / "bin")}, isdir=no_standard) is None
    assert _build.find_cuda_root({"PATH": str(tmp_path / "nowhere")}, isdir=no_standard) is None


# ---------------------------------------------------------------------------------- NVTX without the nvtx package
@pytest.fixture
def fresh_annotate():
    profiling._annotate.cache_clear()
    yield
    profiling._annotate.cache_clear()


def test_nvtx_falls_back_to_torch_cuda_nvtx(monkeypatch, fresh_annotate):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "nvtx", None)  # `import nvtx` raises ImportError, as on the GPU image
    assert profiling._annotate() is torch.cuda.nvtx.range
    profiling._annotate.cache_clear()
    monkeypatch.setitem(sys.modules, "nvtx", types.ModuleType("nvtx"))  # broken: no annotate
    assert profiling._annotate() is torch.cuda.nvtx.range


def test_nvtx_package_is_used_when_present_and_cpu_is_a_no_op(monkeypatch, fresh_annotate):
    calls = []
    fake = types.ModuleType("nvtx")
    fake.annotate = lambda name, domain: calls.append((name, domain)) or "ctx"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "nvtx", fake)
    assert profiling.nvtx_range("flowfm/sample") == "ctx" and calls == [("flowfm/sample", "flowfm")]
    profiling._annotate.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiling.nvtx_range("flowfm/sample") is profiling._NOOP and len(calls) == 1
