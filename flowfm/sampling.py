"""``flowfm.fast_sample``: the one entry point for generating windows from a trained model.

    x = fast_sample(model, z=z, steps=10, method="heun")         # conditioned on representations z (B, D)
    x = fast_sample(model, x_ref=windows, steps=10)              # conditioned on E(windows)
    x = fast_sample(model, n=16, steps=10)                       # unconditional (the learned null vector)

Noise x0 ~ N(0, I) in the normalised space (drawn from ``generator`` for reproducibility), integrated from t = 0 to
1 with the chosen solver, then de-normalised to g. ``guidance`` w != 1 uses v = v_null + w (v_z - v_null) with both
branches evaluated in one doubled batch. Same call on CPU or GPU; ``backend`` picks the kernels
(None: ``$FLOWFM_BACKEND`` / auto).
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Optional

import torch

from flowfm.profiling import nvtx_range
from flowfm.solvers import METHODS, integrate


def _validated_condition(model, z, x_ref, n) -> tuple[torch.Tensor, bool]:
    """Returns (z (B, D), conditional?)."""
    given = [name for name, value in (("z", z), ("x_ref", x_ref)) if value is not None]
    if len(given) > 1:
        raise ValueError("pass at most one of z= and x_ref= (x_ref is encoded into z)")
    if x_ref is not None:
        if not torch.is_tensor(x_ref) or not torch.isfinite(x_ref).all():
            raise ValueError("x_ref must be a finite tensor of shape (B, C, L) in g")
        z = model.encode(x_ref.to(model.null_z.device, torch.float32))
    if z is not None:
        if not torch.is_tensor(z) or z.dim() != 2 or z.shape[1] != model.z_dim:
            shape = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            raise ValueError(f"z must have shape (B, {model.z_dim}) for this model, got {shape}")
        if not torch.isfinite(z).all():
            raise ValueError("z contains NaN or inf")
        if n is not None and n != z.shape[0]:
            raise ValueError(f"n={n} disagrees with the batch of z ({z.shape[0]}); leave n out when conditioning")
        return z.to(model.null_z.device, model.null_z.dtype), True
    if n is None:
        raise ValueError("pass z=, x_ref= or n= (the number of unconditional samples)")
    if not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return model.null_condition(int(n)), False


def fast_sample(model, z: Optional[torch.Tensor] = None, x_ref: Optional[torch.Tensor] = None,
                n: Optional[int] = None, steps: int = 10, method: str = "heun", guidance: float = 1.0,
                generator: Optional[torch.Generator] = None, length: Optional[int] = None,
                backend: Optional[str] = None) -> torch.Tensor:
    """Generate windows (B, C, L) in g; see the module docstring. ``length`` defaults to the training window."""
    if not isinstance(steps, Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; expected one of {METHODS}")
    if not isinstance(guidance, Real) or not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    length = model.config.window if length is None else int(length)
    if length < 16:
        raise ValueError(f"length must be >= 16 samples, got {length}")
    backend = model.backend if backend is None else backend
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), nvtx_range("flowfm/sample"):
            cond, conditional = _validated_condition(model, z, x_ref, n)
            b, device = cond.shape[0], cond.device
            x0 = torch.randn((b, model.config.in_channels, length), generator=generator,
                             device=generator.device if generator is not None else device)
            x0 = x0.to(device)
            guided = conditional and guidance != 1.0
            null = model.null_condition(b)

            def field(x, t):
                if not guided:
                    return model.velocity(x, t, cond), None
                v = model.velocity(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
                return v[:b], v[b:]

            x1 = integrate(field, x0, steps, method, guidance if guided else 1.0, backend=backend)
            return model.normalizer.denormalize(x1)
    finally:
        model.train(was_training)
