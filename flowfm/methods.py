"""The method registry: one table from a method name to the module and class that implement it.

    "flowfm"         flowfm.model.FlowFM                        the joint encoder + flow-matching generator
    "diffusion"      flowfm.baselines.diffusion.DiffusionFM      the same joint model as an epsilon-prediction DDPM
    "ssl-wearables"  flowfm.baselines.ssl_wearables.SSLWearables  multi-task self-supervision on the same encoder

Modules are imported by name on first use (as ``flowfm_kernels.dispatch`` resolves op backends), so the checkpoint
format (:mod:`flowfm.checkpoint`) can load any method without importing the model classes at import time, and the
CLI can list the choices (:data:`METHODS`) without importing a model. Every class has ``method``, ``config_type``,
``encode``, ``loss(x, generator=...)``, ``save`` / ``load``.
"""
from __future__ import annotations

import importlib
from typing import Optional

__all__ = ["METHODS", "model_class", "model_classes", "build_model"]

_IMPLEMENTATIONS = {
    "flowfm": ("flowfm.model", "FlowFM"),
    "diffusion": ("flowfm.baselines.diffusion", "DiffusionFM"),
    "ssl-wearables": ("flowfm.baselines.ssl_wearables", "SSLWearables"),
}
#: every method name, in the order tables list them
METHODS = tuple(_IMPLEMENTATIONS)


def model_class(method: str) -> type:
    """The class of ``method``; ValueError naming the known methods for any other name."""
    if method not in _IMPLEMENTATIONS:
        raise ValueError(f"method={method!r} is unknown; expected one of {sorted(_IMPLEMENTATIONS)}")
    module, name = _IMPLEMENTATIONS[method]
    return getattr(importlib.import_module(module), name)


def model_classes() -> dict:
    """{method: class} for every method."""
    return {method: model_class(method) for method in METHODS}


def build_model(method: str, config_kwargs: Optional[dict] = None, backend: Optional[str] = None):
    """A fresh model of ``method`` from its config fields; ValueError for an unknown method or config field."""
    cls = model_class(method)
    try:
        config = cls.config_type(**(config_kwargs or {}))
    except TypeError as exc:
        raise ValueError(f"invalid config for method {method!r}: {exc}") from None
    return cls(config, backend=backend)
