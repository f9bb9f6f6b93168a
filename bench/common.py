"""Shared pieces of the benchmark suites (``bench.kernels``, ``bench.sampling``, ``bench.training``).

* :func:`time_fn`: median / p20 / p80 wall time of a callable after warm-up (CUDA: ``torch.cuda.Event`` pairs around
  each call, so launch overhead is included exactly as a user sees it; CPU: ``time.perf_counter``), plus the first
  call timed on its own (compile / capture / autotune cost).
* :func:`environment`: device name, torch / triton / CUDA versions, git commit, CPU count, torch threads.
* :func:`ceilings`: the device's measured copy bandwidth (``dst.copy_(src)`` of a large tensor) and matmul rates
  (fp32 with TF32 off, TF32, bf16), measured in the same run as the suite, so achieved / ceiling fractions compare
  numbers taken under the same clocks and load (docs/design.md §7).
* :func:`write_result`: ``<out>/<suite>_<device>.json`` written atomically.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from flowfm.data.atomic import atomic_write_text
from flowfm.environment import environment  # noqa: F401  (re-exported: common.environment)

SCHEMA_VERSION = 1


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


RESULTS = Path(__file__).resolve().parent / "results"


def make_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small configuration per case (smoke test)")
    parser.add_argument("--out", default=str(RESULTS),
                        help="folder for <suite>_<device>.json (default: the checkout's bench/results, wherever "
                             "the command runs from)")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"),
                        help="default: cuda when available, else cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default: suite's)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    return parser


def resolve_device(name: Optional[str], threads: Optional[int] = None) -> torch.device:
    """The benchmark device; also applies ``--threads``."""
    if threads:
        torch.set_num_threads(threads)
    name = name or default_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an ascending list, q in [0, 100]."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_ms(samples_ms: list[float]) -> dict:
    s = sorted(samples_ms)
    return dict(median_ms=statistics.median(s), p20_ms=_percentile(s, 20), p80_ms=_percentile(s, 80),
                min_ms=s[0], mean_ms=statistics.fmean(s), repeats=len(s))


def time_fn(fn: Callable[[], object], device: torch.device, *, warmup: int = 3, repeats: int = 10,
            min_total_s: float = 0.0, max_repeats: int = 1000) -> dict:
    """Time ``fn()``. The first call is timed alone (``first_call_ms``: compile, capture, autotune, allocator
    warm-up), then ``warmup - 1`` more untimed calls, then ``repeats`` timed calls (more, up to ``max_repeats``,
    until ``min_total_s`` of timed work has accumulated). Returns :func:`summarize_ms` plus ``first_call_ms``."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(max(0, warmup - 1)):
        fn()
    sync(device)
    samples: list[float] = []
    total = 0.0
    while len(samples) < repeats or (total < min_total_s and len(samples) < max_repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            fn()
            ms = (time.perf_counter() - t0) * 1e3
        samples.append(ms)
        total += ms / 1e3
    out = summarize_ms(samples)
    out["first_call_ms"] = first_ms
    return out


def ceilings(device: torch.device, quick: bool = False) -> dict:
    """Measured copy bandwidth (GB/s, counting read + write) and matmul rates (TFLOP/s) on ``device``."""
    gpu = device.type == "cuda"
    n_bytes = (1 << 30 if not quick else 1 << 28) if gpu else (1 << 26 if not quick else 1 << 24)
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device, warmup=3, repeats=20 if gpu else 5)
    out = dict(copy_bytes=2 * n_bytes, copy_ms=t["median_ms"],
               copy_gbps=2 * n_bytes / (t["median_ms"] * 1e-3) / 1e9)
    src = dst = None  # free before the matmuls
    n = (8192 if not quick else 4096) if gpu else (1024 if not quick else 512)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32 if gpu else None
    cases = [("fp32", torch.float32, False), ("bf16", torch.bfloat16, None)]
    if gpu:
        cases.insert(1, ("tf32", torch.float32, True))
    try:
        for name, dtype, tf32 in cases:
            if gpu and tf32 is not None:
                torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            t = time_fn(lambda: torch.mm(a, b), device, warmup=3, repeats=10 if gpu else 3)
            out[f"matmul_{name}_tflops"] = 2 * n ** 3 / (t["median_ms"] * 1e-3) / 1e12
            a = b = None
    finally:
        if gpu:
            torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    out["matmul_n"] = n
    if gpu:
        torch.cuda.empty_cache()
    return out


def rates(cost: dict, median_ms: float, ceil: Optional[dict], matmul_key: str = "matmul_tf32_tflops") -> dict:
    """Achieved GB/s and TFLOP/s of a call moving ``cost['bytes']`` and doing ``cost['flops']``; with ``ceil``,
    the fractions of the measured copy bandwidth and matmul rate."""
    s = median_ms * 1e-3
    out = dict(bytes=int(cost["bytes"]), flops=int(cost["flops"]),
               gbps=cost["bytes"] / s / 1e9, tflops=cost["flops"] / s / 1e12)
    if ceil:
        out["frac_copy_bw"] = out["gbps"] / ceil["copy_gbps"]
        key = matmul_key if matmul_key in ceil else "matmul_fp32_tflops"
        out["frac_matmul"] = out["tflops"] / ceil[key]
        out["matmul_ceiling"] = key
    return out


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> Optional[float]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def short_reason(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def result_path(out: str | Path, suite: str, device: torch.device) -> Path:
    return Path(out) / f"{suite}_{device.type}.json"


def write_result(out: str | Path, suite: str, device: torch.device, payload: dict) -> Path:
    import json

    path = result_path(out, suite, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(suite=suite, schema=SCHEMA_VERSION, **payload)
    atomic_write_text(path, json.dumps(doc, indent=2, default=str, allow_nan=True) + "\n")
    print(f"wrote {path}", flush=True)
    return path
