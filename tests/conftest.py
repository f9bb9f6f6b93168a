"""Shared pytest setup: ``tests.*`` helper imports resolve here; the ``gpu`` marker skips without CUDA; one torch thread on CPU; Triton's interpreter.

Without a GPU, ``TRITON_INTERPRET=1`` is set here, once, before any test module (and so any Triton kernel) is
imported: Triton decides at ``@triton.jit`` time whether a kernel is interpreted, so a per-file setting would make
correctness depend on which test file was collected first. Tests that need the interpreter off use
``monkeypatch.delenv`` (the dispatcher reads the variable at call time).
"""
import os
import sys
import types
from pathlib import Path

import pytest
import torch

# ``tests.<helper>`` imports (tests/cuda_emulation.py, ...) must resolve to this folder even when an installed
# distribution ships a top-level ``tests`` package (flow_matching does; a regular package would win over this
# namespace folder on sys.path)
_tests = types.ModuleType("tests")
_tests.__path__ = [str(Path(__file__).resolve().parent)]
sys.modules["tests"] = _tests

os.environ.setdefault("FLOWFM_BACKEND", "auto")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Test models are tiny: one intra-op thread is as fast and immune to OpenMP spin-wait collapse when the CPU is
# shared (2 threads on 2 busy cores made a tiny backward pass 100x slower here).
torch.set_num_threads(int(os.environ.get("FLOWFM_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
