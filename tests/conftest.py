"""Shared pytest setup: the ``gpu`` marker skips without CUDA; tests run single-threaded-deterministic on CPU."""
import os

import pytest
import torch

os.environ.setdefault("FLOWFM_BACKEND", "auto")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
