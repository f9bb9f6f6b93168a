"""Whether a model's null vector (the condition of unconditional and guided sampling) was ever trained.

Condition dropout (``p_uncond > 0``) trains the null vector with the networks; with dropout off (the default) it
stays at its initial value until :func:`flowfm.training.null_fit.fit_null_vector` fits it after training and
records the fit in ``config.extra["null_fit"]``. Sampling reads this to refuse guidance with an untrained null.
"""
from __future__ import annotations

__all__ = ["null_fit_needed"]


def null_fit_needed(model) -> bool:
    """True for a model whose null vector no training has reached: p_uncond = 0 and no recorded fit."""
    config = model.config
    return (getattr(model, "null_z", None) is not None and getattr(config, "p_uncond", None) == 0
            and "null_fit" not in config.extra)
