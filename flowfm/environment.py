"""Where a result was measured: device name, library versions, git commit, threads (stored with every result JSON)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch


def git_commit() -> Optional[str]:
    """HEAD of the checkout this package runs from, with ``-dirty`` when tracked files are modified; None outside
    a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=here)
        if res.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, timeout=10, cwd=here)
            return res.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def cpu_model() -> Optional[str]:
    """The CPU's model name from /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def environment(device="cpu") -> dict:
    """Device name and properties, torch / triton / CUDA / Python versions, commit, CPU count, torch threads, time."""
    device = torch.device(device)
    try:
        import triton
        triton_version = triton.__version__
    except Exception as exc:  # missing or broken triton: record why
        triton_version = f"unavailable ({type(exc).__name__}: {exc})"
    env = dict(device=str(device), device_type=device.type, torch=torch.__version__, triton=triton_version,
               cuda=torch.version.cuda, python=sys.version.split()[0], platform=platform.platform(),
               cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
               torch_threads=torch.get_num_threads(), git_commit=git_commit(),
               flowfm_backend_env=os.environ.get("FLOWFM_BACKEND"),
               time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, sm_count=props.multi_processor_count,
                   device_memory_gib=round(props.total_memory / 2**30, 2),
                   capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
    else:
        env["device_name"] = cpu_model() or env["cpu"] or "cpu"
    return env
