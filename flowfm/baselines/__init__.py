"""Baselines trained with the same encoder, U-Net, data and budget as FlowFM (docs/design.md §4).

``DiffusionFM`` (method ``"diffusion"``)      the joint model as an epsilon-prediction DDPM; DDPM/DDIM samplers
``SSLWearables`` (method ``"ssl-wearables"``) SSL-Wearables multi-task self-supervision on the same encoder

    model = build_model("diffusion", {"preset": "small", "window": 300})
    flowfm.fast_sample(model, x_ref=x, steps=50, method="ddim")

:mod:`flowfm.methods` is the one method -> class table (used by :func:`flowfm.checkpoint.load_model` and the
CLI); ``build_model`` is re-exported from it.
"""
from __future__ import annotations

from flowfm.baselines.diffusion import DiffusionConfig, DiffusionFM, ddim_timesteps, linear_beta_schedule
from flowfm.baselines.ssl_wearables import SSLWearables, SSLWearablesConfig
from flowfm.methods import build_model

__all__ = ["build_model", "DiffusionFM", "DiffusionConfig",
           "SSLWearables", "SSLWearablesConfig", "linear_beta_schedule", "ddim_timesteps"]
