"""Model configuration: :class:`FlowFMConfig` and its presets.

``"harnet10"`` is SSL-Wearables' full-size ResNet-V2 encoder (about 10.5 M parameters, z of dim 1024) with a
(64, 128, 256) U-Net; ``"small"`` is the CPU-friendly quarter-width encoder (z of dim 256) with a (24, 48, 96)
U-Net, the preset every CPU number in docs/results.md uses.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

PRESETS: dict[str, dict[str, Any]] = {
    "harnet10": dict(encoder_width=1.0, unet_channels=(64, 128, 256), unet_blocks=2, cond_dim=512),
    "small": dict(encoder_width=0.25, unet_channels=(24, 48, 96), unet_blocks=1, cond_dim=128),
    "tiny": dict(encoder_width=0.125, unet_channels=(16, 32), unet_blocks=1, cond_dim=32),
}
#: the largest model a config may describe (checked before anything is built)
MAX_PARAMETERS = 2_000_000_000
ENCODER_VIEWS = ("augment", "identical", "shift", "shift+augment")
T_SAMPLINGS = ("uniform", "logit_normal")
Z_NORMS = ("none", "layer")


class ConfigDictMixin:
    """JSON round trip of a config dataclass; unknown keys are refused with the list of known ones.

    ``LEGACY_DEFAULTS`` holds the values of fields whose default changed after files were written without them: a
    stored dict that lacks such a field describes a model built with the old value, so it loads with that value.
    """

    LEGACY_DEFAULTS: dict = {}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The config stored as ``data``: unknown keys and values of the wrong JSON type (a string or 1e6 where an
        integer belongs, a NaN size) are refused with the field, its expected type and the value, before
        ``__post_init__`` checks the ranges and before any module is built."""
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.__name__} is a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            expected = _type_problem(hints[name], value)
            if expected:
                raise ValueError(f"{cls.__name__} field {name} must be {expected}, got {value!r}")
        return cls(**{**cls.LEGACY_DEFAULTS, **data})


def _type_problem(hint, value) -> str:
    """'' if ``value`` (parsed JSON) fits the annotation ``hint``, else the expected type in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return ""
        inner = [a for a in args if a is not type(None)]
        problems = [_type_problem(a, value) for a in inner]
        return "" if "" in problems else " or ".join(problems) + (" or null" if type(None) in args else "")
    if hint is bool:
        return "" if isinstance(value, bool) else "true or false"
    if hint is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return "" if ok else "a finite number"
    if hint is str:
        return "" if isinstance(value, str) else "a string"
    if hint is dict or origin is dict:
        return "" if isinstance(value, dict) else "a JSON object"
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return "a list"
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return f"a list of {len(items)}"
        problems = [_type_problem(a, v) for a, v in zip(items, value)]
        first = next((p for p in problems if p), "")
        return "" if not first else "a list of " + first.split(" ", 1)[1] + "s"
    return ""


@dataclass
class FlowFMConfig(ConfigDictMixin):
    """Everything needed to rebuild a FlowFM model (stored as JSON beside the weights).

    Fields left ``None`` take the preset's value. ``window`` is the training window length L (any L >= 16 works at
    inference). ``sigma_min`` is the minimum noise of the conditional-OT path, ``p_uncond`` the condition-dropout
    probability (default 0, not docs/design.md §3's 0.1: dropout cost the HAPT encoder, and unconditional sampling from
    the
    representation bank matched the dropout-trained null vector; docs/results.md "Condition dropout"),
    ``t_sampling`` the
    training-time distribution (default t = sigmoid(N(1, 1)), biased toward the data end t = 1: on HAPT it gave a
    clearly better encoder than uniform t, docs/results.md "Design variants"),
    ``z_norm`` / ``z_rank`` how the generator reads z (default ``"layer"``: each z standardised by a LayerNorm without
    affine parameters before the generator's projection, which on HAPT beat diffusion in more settings than the plain
    projection did, docs/results.md "Design variants"; ``z_rank`` a rank-r bottleneck;
    :class:`~flowfm.velocity.UNet1d`; the
    probed representation is z itself either way),
    ``time_embedding_scale`` a, the velocity network's time embedding sinusoidal(a t) (default 1: the field varies
    slowly enough in t for the solvers to reach their orders at few steps; configs written before the field load
    with 1000, which made the field oscillate in t with a period of ~0.006; docs/results.md "Solver order"),
    ``stop_grad_encoder`` the ablation that blocks the
    generator's gradient into the encoder, ``encoder_view`` what the encoder sees (docs/design.md §3; ``view_*`` its
    parameters, ``view_max_shift`` the largest time shift of the ``shift`` views in samples: 150 = 5 s at 30 Hz).
    """

    #: configs written before z_norm existed describe generators that read z unnormalised; those written before
    #: time_embedding_scale existed embed t as sinusoidal(1000 t)
    LEGACY_DEFAULTS = {"z_norm": "none", "time_embedding_scale": 1000.0}

    preset: str = "small"
    in_channels: int = 3
    window: int = 300
    encoder_width: Optional[float] = None
    unet_channels: Optional[tuple[int, ...]] = None
    unet_blocks: Optional[int] = None
    cond_dim: Optional[int] = None
    groups: int = 8
    sigma_min: float = 0.0
    p_uncond: float = 0.0
    t_sampling: str = "logit_normal"
    logit_normal_mean: float = 1.0
    logit_normal_std: float = 1.0
    z_norm: str = "layer"
    z_rank: Optional[int] = None
    time_embedding_scale: float = 1.0
    stop_grad_encoder: bool = False
    encoder_view: str = "augment"
    view_scale: tuple[float, float] = (0.8, 1.2)
    view_jitter_g: float = 0.02
    view_max_rotation_deg: float = 15.0
    view_warp_sigma: float = 0.1
    view_warp_knots: int = 4
    view_max_shift: int = 150
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r} is unknown; expected one of {sorted(PRESETS)}")
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.unet_channels = tuple(int(c) for c in self.unet_channels)
        self.view_scale = tuple(float(s) for s in self.view_scale)
        checks = [
            (1 <= self.in_channels <= 64, f"in_channels must be in 1..64, got {self.in_channels}"),
            (16 <= self.window <= 1_000_000, f"window must be in 16..1000000 samples, got {self.window}"),
            (1 <= len(self.unet_channels) <= 8 and all(1 <= c <= 4096 for c in self.unet_channels),
             f"unet_channels must be 1 to 8 widths in 1..4096, got {self.unet_channels}"),
            (1 <= self.unet_blocks <= 16, f"unet_blocks must be in 1..16, got {self.unet_blocks}"),
            (1 <= self.cond_dim <= 16384, f"cond_dim must be in 1..16384, got {self.cond_dim}"),
            (1 <= self.groups <= 4096, f"groups must be in 1..4096, got {self.groups}"),
            (0 < self.encoder_width <= 16, f"encoder_width must be in (0, 16] (1.0 = harnet10), got "
                                           f"{self.encoder_width}"),
            (self.approx_parameters() <= MAX_PARAMETERS,
             f"this config would have about {self.approx_parameters() / 1e9:.1f} billion parameters "
             f"({self.approx_parameters() * 16 / 2**30:.0f} GB to train in fp32); expected at most "
             f"{MAX_PARAMETERS / 1e9:g} billion (check unet_channels, unet_blocks, encoder_width, cond_dim)"),
            (0.0 <= self.sigma_min < 1.0, f"sigma_min must be in [0, 1), got {self.sigma_min}"),
            (0.0 <= self.p_uncond < 1.0, f"p_uncond must be in [0, 1), got {self.p_uncond}"),
            (self.t_sampling in T_SAMPLINGS, f"t_sampling={self.t_sampling!r}; expected one of {T_SAMPLINGS}"),
            (self.z_norm in Z_NORMS, f"z_norm={self.z_norm!r}; expected one of {Z_NORMS}"),
            (self.z_rank is None or self.z_rank >= 1, f"z_rank must be >= 1 or None, got {self.z_rank}"),
            (math.isfinite(self.time_embedding_scale) and self.time_embedding_scale > 0,
             f"time_embedding_scale must be a finite number > 0, got {self.time_embedding_scale}"),
            (self.encoder_view in ENCODER_VIEWS,
             f"encoder_view={self.encoder_view!r}; expected one of {ENCODER_VIEWS}"),
            (self.view_max_shift >= 1, f"view_max_shift must be >= 1 sample, got {self.view_max_shift}"),
            (all(c % self.groups == 0 for c in self.unet_channels),
             f"unet_channels {self.unet_channels} must all be divisible by groups={self.groups}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def approx_parameters(self) -> int:
        """A rough parameter count (75-85 % of the built model for the presets), cheap enough to check before
        anything is built, so a config from a tampered file cannot allocate 100 GB: U-Net conv blocks (two k=3
        convs per block and level, down and up paths, FiLM from cond_dim) plus the encoder (~10 M at width 1,
        scaling with width^2)."""
        unet = sum(2 * self.unet_blocks * (2 * 3 * c * c + 2 * self.cond_dim * c) for c in self.unet_channels)
        encoder = int(10e6 * self.encoder_width ** 2)
        return int(unet + encoder + self.cond_dim * self.cond_dim * 4)

