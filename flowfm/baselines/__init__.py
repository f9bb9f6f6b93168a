"""Baselines trained with the same encoder, U-Net, data and budget as FlowFM (docs/design.md §4).

``DiffusionFM`` (method ``"diffusion"``)      the joint model as an epsilon-prediction DDPM; DDPM/DDIM samplers
``SSLWearables`` (method ``"ssl-wearables"``) SSL-Wearables multi-task self-supervision on the same encoder

    model = build_model("diffusion", {"preset": "small", "window": 300})
    flowfm.fast_sample(model, x_ref=x, steps=50, method="ddim")

:data:`MODEL_CLASSES` maps each method name to its class (used by :func:`flowfm.checkpoint.load_model`);
every class has ``method``, ``config_type``, ``encode``, ``loss(x, generator=...)``, ``save``/``load``.
"""
from __future__ import annotations

from typing import Optional

from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM, ddim_timesteps, linear_beta_schedule
from flowfm.baselines.ssl_wearables import SSLWearables, SSLWearablesConfig

MODEL_CLASSES = {"diffusion": DiffusionFM, "ssl-wearables": SSLWearables}


def all_model_classes() -> dict:
    """{method: class} for FlowFM and every baseline."""
    from flowfm.model import FlowFM

    return {"flowfm": FlowFM, **MODEL_CLASSES}


def build_model(method: str, config_kwargs: Optional[dict] = None, backend: Optional[str] = None):
    """A fresh model of ``method`` ("flowfm", "diffusion" or "ssl-wearables") from its config fields."""
    classes = all_model_classes()
    if method not in classes:
        raise ValueError(f"method={method!r} is unknown; expected one of {sorted(classes)}")
    cls = classes[method]
    try:
        config = cls.config_type(**(config_kwargs or {}))
    except TypeError as exc:
        raise ValueError(f"invalid config for method {method!r}: {exc}") from None
    return cls(config, backend=backend)


__all__ = ["MODEL_CLASSES", "build_model", "all_model_classes", "DiffusionFM", "DiffusionConfig",
           "SSLWearables", "SSLWearablesConfig", "linear_beta_schedule", "ddim_timesteps"]
