"""Shared pytest setup: the ``gpu`` marker skips without CUDA; one torch thread on CPU."""
import os

import pytest
import torch

os.environ.setdefault("FLOWFM_BACKEND", "auto")
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
