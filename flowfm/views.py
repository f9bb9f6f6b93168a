"""Encoder views: what the encoder sees of a window x1 while the generator must produce x1 itself (docs/design.md §3).

``identical``: E sees x1. ``shift``: E sees a time-shifted cut of the same recording (up to ``view_max_shift``
samples earlier or later, :mod:`flowfm.data.time_shift`; the trainer supplies the cuts). ``augment`` (default, best
measured, docs/results.md "Design variants"): a mild, label-preserving augmentation, applied per window, in this
order (all in g, x of shape (B, C, L)); ``shift+augment`` augments the shifted cut:

1. time warp: speed s(t) = 1 + sigma * piecewise-linear noise over ``knots`` knots, positions
   p = cumsum(s) rescaled to [0, L-1], x'(l) = x(p_l) by linear interpolation;
2. rotation by angle ~ U(-theta, theta) about a uniformly random axis (Rodrigues), per xyz triple of channels;
   never a full 3D rotation: the direction of gravity separates postures;
3. per-axis scaling by U(lo, hi);
4. additive Gaussian jitter of std ``jitter_g``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from flowfm import rng


def time_warp(x: torch.Tensor, sigma: float, knots: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Smooth random time warp; (B, C, L) -> (B, C, L), speed noise N(0, sigma) at ``knots`` knots."""
    b, _, length = x.shape
    if sigma <= 0 or length < 2:
        return x
    speed = 1 + sigma * rng.randn((b, 1, knots), generator, device=x.device)
    speed = F.interpolate(speed.clamp_min(0.1), size=length, mode="linear", align_corners=True)[:, 0]
    pos = torch.cumsum(speed, dim=-1)
    pos = (pos - pos[:, :1]) / (pos[:, -1:] - pos[:, :1]) * (length - 1)
    lo = pos.floor().long().clamp(0, length - 2)
    frac = (pos - lo).to(x.dtype)[:, None, :]
    idx = lo[:, None, :].expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, idx) * (1 - frac) + torch.gather(x, 2, idx + 1) * frac


def random_rotation(batch: int, max_deg: float, generator: Optional[torch.Generator] = None,
                    device=None, shared: bool = False) -> torch.Tensor:
    """(B, 3, 3) rotations by U(-max_deg, max_deg) degrees about uniformly random unit axes (Rodrigues).
    ``shared``: drawn once for a whole batch, not per window (see :mod:`flowfm.rng`)."""
    axis = rng.randn((batch, 3), generator, device=device, shared=shared)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = (rng.rand(batch, generator, device=device, shared=shared) * 2 - 1) * math.radians(max_deg)
    kx, ky, kz = axis.unbind(1)
    zero = torch.zeros_like(kx)
    k = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=1).reshape(batch, 3, 3)
    eye = torch.eye(3, device=device).expand(batch, 3, 3)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return eye + s * k + (1 - c) * (k @ k)


def augment_view(x: torch.Tensor, scale=(0.8, 1.2), jitter_g: float = 0.02, max_rotation_deg: float = 15.0,
                 warp_sigma: float = 0.1, warp_knots: int = 4,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The mild-augmentation encoder view of a batch (B, C, L) in g; see the module docstring."""
    b, c, _ = x.shape
    out = time_warp(x, warp_sigma, warp_knots, generator)
    if max_rotation_deg > 0 and c % 3 == 0:
        rot = random_rotation(b * (c // 3), max_rotation_deg, generator, x.device).to(x.dtype)
        out = (rot @ out.reshape(b * (c // 3), 3, -1)).reshape(out.shape)
    lo, hi = scale
    factors = lo + (hi - lo) * rng.rand((b, c, 1), generator, device=x.device, dtype=x.dtype)
    out = out * factors
    if jitter_g > 0:
        out = out + jitter_g * rng.randn(out.shape, generator, device=x.device, dtype=x.dtype)
    return out


def needs_shifted_cuts(cfg) -> bool:
    """Whether ``cfg.encoder_view`` reads time-shifted cuts (which only the data pipeline can cut)."""
    return cfg.encoder_view.startswith("shift")


def encoder_view(x: torch.Tensor, cfg, generator: Optional[torch.Generator] = None,
                 shifted: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Apply ``cfg.encoder_view`` (a :class:`~flowfm.config.FlowFMConfig`) to a batch (B, C, L); ``shifted``
    (B, C, L) holds the time-shifted cuts of the same windows, required by the ``shift`` views."""
    if needs_shifted_cuts(cfg):
        if shifted is None:
            raise ValueError(f"encoder_view={cfg.encoder_view!r} needs the time-shifted cut of every window "
                             "(pass shifted=...; flowfm.training.pretrain cuts them from consecutive windows)")
        if shifted.shape != x.shape:
            raise ValueError(f"shifted cuts must have the batch's shape {tuple(x.shape)}, got {tuple(shifted.shape)}")
        x = shifted
    if not cfg.encoder_view.endswith("augment"):
        return x
    return augment_view(x, cfg.view_scale, cfg.view_jitter_g, cfg.view_max_rotation_deg, cfg.view_warp_sigma,
                        cfg.view_warp_knots, generator)
