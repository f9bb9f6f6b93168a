"""SSL-Wearables multi-task self-supervision (docs/design.md §4) on FlowFM's encoder (method ``"ssl-wearables"``).

The same ResNet-V2 encoder E as FlowFM (same code, same presets) with one binary head per pretext task on z:

    x' , y = pretext(augment(x))                 augment: axis swap + random 3D rotation; y_task in {0, 1}
    L      = mean_task CE(head_task(E(x')), y_task)      tasks: aot, permute, time_warp, each applied with p = 0.5

(transforms in :mod:`flowfm.baselines.pretext`). Heads are linear, as in SSL-Wearables (``head="mlp"`` gives a
2-layer ReLU MLP). There is no generator: the model carries an identity :class:`~flowfm.normalizer.ChannelNormalizer`
(never fitted) only so that checkpoints have the same layout as the generative models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from flowfm.config import PRESETS, ConfigDictMixin
from flowfm.checkpoint import CheckpointMixin
from flowfm.encoder import EmbedMixin, ResNetEncoder, check_window_batch
from flowfm.normalizer import ChannelNormalizer
from flowfm.profiling import nvtx_range
from flowfm.baselines.pretext import AUGMENT_SCOPES, TASKS, pretext_batch

HEADS = ("linear", "mlp")


@dataclass
class SSLWearablesConfig(ConfigDictMixin):
    """Everything needed to rebuild an :class:`SSLWearables` model. ``preset``, ``in_channels``, ``window`` and
    ``encoder_width`` (None: the preset's) mean what they mean in :class:`~flowfm.config.FlowFMConfig`.

    ``tasks`` the pretext tasks (subset of aot, permute, time_warp), each applied with probability ``p_transform``;
    ``head`` linear (SSL-Wearables) or mlp (``head_hidden`` units); ``permute_segments`` / ``permute_min_segment``
    the number and minimum length of the shuffled segments; ``warp_sigma`` / ``warp_knots`` the speed noise of the
    per-axis time warp; ``axis_swap`` / ``rotation`` the augmentations, drawn once per batch or per window
    (``augment_scope``, see :mod:`flowfm.baselines.pretext`)."""

    preset: str = "small"
    in_channels: int = 3
    window: int = 300
    encoder_width: Optional[float] = None
    tasks: tuple[str, ...] = TASKS
    p_transform: float = 0.5
    head: str = "linear"
    head_hidden: int = 256
    permute_segments: int = 4
    permute_min_segment: int = 10
    warp_sigma: float = 0.2
    warp_knots: int = 4
    axis_swap: bool = True
    rotation: bool = True
    augment_scope: str = "batch"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r} is unknown; expected one of {sorted(PRESETS)}")
        if self.encoder_width is None:
            self.encoder_width = PRESETS[self.preset]["encoder_width"]
        self.tasks = tuple(str(t) for t in self.tasks)
        checks = [
            (self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}"),
            (self.window >= 16, f"window must be >= 16 samples, got {self.window}"),
            (self.encoder_width > 0, f"encoder_width must be > 0, got {self.encoder_width}"),
            (len(self.tasks) > 0 and set(self.tasks) <= set(TASKS) and len(set(self.tasks)) == len(self.tasks),
             f"tasks must be distinct names from {TASKS}, got {self.tasks}"),
            (0.0 < self.p_transform < 1.0, f"p_transform must be in (0, 1), got {self.p_transform}"),
            (self.head in HEADS, f"head={self.head!r}; expected one of {HEADS}"),
            (self.head_hidden >= 1, f"head_hidden must be >= 1, got {self.head_hidden}"),
            (2 <= self.permute_segments <= 6, f"permute_segments must be in [2, 6], got {self.permute_segments}"),
            (self.permute_min_segment >= 1, f"permute_min_segment must be >= 1, got {self.permute_min_segment}"),
            (self.warp_sigma > 0, f"warp_sigma must be > 0, got {self.warp_sigma}"),
            (self.warp_knots >= 2, f"warp_knots must be >= 2, got {self.warp_knots}"),
            (self.augment_scope in AUGMENT_SCOPES,
             f"augment_scope={self.augment_scope!r}; expected one of {AUGMENT_SCOPES}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)



def _head(z_dim: int, kind: str, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(z_dim, 2)
    return nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))


class SSLWearables(CheckpointMixin, EmbedMixin, nn.Module):
    """Encoder + one binary head per pretext task; ``encode``, ``embed``, ``loss``, ``save``/``load`` like FlowFM."""

    method = "ssl-wearables"
    config_type = SSLWearablesConfig

    def __init__(self, config: Optional[SSLWearablesConfig] = None, backend: Optional[str] = None):
        super().__init__()
        self.config = config if config is not None else SSLWearablesConfig()
        if not isinstance(self.config, SSLWearablesConfig):
            raise TypeError(f"SSLWearables needs an SSLWearablesConfig, got {type(self.config).__name__}")
        cfg = self.config
        self.encoder = ResNetEncoder(cfg.in_channels, cfg.encoder_width)
        self.z_dim = self.encoder.out_dim
        self.heads = nn.ModuleDict({task: _head(self.z_dim, cfg.head, cfg.head_hidden) for task in cfg.tasks})
        self.normalizer = ChannelNormalizer(cfg.in_channels)   # identity; kept for the checkpoint layout
        self.backend = backend

    def set_backend(self, backend: Optional[str]) -> "SSLWearables":
        """No kernels to choose (a plain encoder); kept so callers can treat every model alike."""
        self.backend = backend
        return self

    def fit_normalizer(self, x) -> "SSLWearables":
        """No-op: the encoder sees raw g and there is no generator whose data space needs normalising."""
        return self

    def _check_input(self, x: torch.Tensor, name: str = "x") -> None:
        check_window_batch(x, self.config.in_channels, name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Windows in g (B, C, L) -> representations z (B, D)."""
        self._check_input(x)
        with nvtx_range("flowfm/encode"):
            return self.encoder(x)

    def pretext(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        """(augmented, transformed windows (B, C, L), {task: labels (B,)}) for this config."""
        cfg = self.config
        return pretext_batch(x, cfg.tasks, cfg.p_transform, cfg.permute_segments, cfg.permute_min_segment,
                             cfg.warp_sigma, cfg.warp_knots, cfg.axis_swap, cfg.rotation, cfg.augment_scope,
                             generator)

    def task_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{task: logits (B, 2)} of already-transformed windows x (B, C, L)."""
        z = self.encode(x)
        return {task: head(z) for task, head in self.heads.items()}

    def loss(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None,
             return_parts: bool = False):
        """Mean over tasks of the binary cross-entropies on a batch x (B, C, L) in g; the transforms draw from
        ``generator``. ``return_parts=True`` also returns {task: (loss, accuracy)} (detached floats)."""
        self._check_input(x)
        with nvtx_range("flowfm/loss"):
            x_t, labels = self.pretext(x, generator)
            logits = self.task_logits(x_t)
            losses = {task: F.cross_entropy(logits[task].float(), labels[task]) for task in self.config.tasks}
            total = torch.stack(list(losses.values())).mean()
        if not return_parts:
            return total
        parts = {task: (float(losses[task].detach()),
                        float((logits[task].argmax(1) == labels[task]).float().mean())) for task in losses}
        return total, parts

    def num_parameters(self, part: str = "all") -> int:
        module = {"all": self, "encoder": self.encoder, "heads": self.heads}[part]
        return sum(p.numel() for p in module.parameters())
