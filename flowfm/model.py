"""FlowFM: a representation encoder and a representation-conditioned flow-matching generator, trained jointly.

Decoupled joint training (docs/design.md §3). With x1 (B, C, L) a batch of windows in g, x1n its normalised form,
x0 ~ N(0, I), t ~ p(t), s = sigma_min and z = E(view(x1)) (B, D):

    x_t = (1 - (1 - s) t) x0 + t x1n,      u = x1n - (1 - s) x0
    L   = mean || v(x_t, t, z~) - u ||^2,  z~ = null vector with probability p_uncond, else z

Gradients reach both networks (``stop_grad_encoder`` blocks the encoder's). Sampling integrates dx/dt = v from
t = 0 to 1 (:func:`flowfm.fast_sample`), with guidance v = v_null + w (v_z - v_null). Representations for users
come from :meth:`~flowfm.encoder.EmbedMixin.embed` (eval mode, batch-independent).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

import flowfm_kernels
from flowfm import rng
from flowfm.config import FlowFMConfig
from flowfm.checkpoint import CheckpointMixin
from flowfm.encoder import EmbedMixin, ResNetEncoder, check_window_batch
from flowfm.normalizer import ChannelNormalizer
from flowfm.paths import sample_t
from flowfm.profiling import nvtx_range
from flowfm.velocity import UNet1d
from flowfm.views import encoder_view


class FlowFM(CheckpointMixin, EmbedMixin, nn.Module):
    """Encoder + U-Net velocity network + channel normaliser + learned null vector + representation bank."""

    method = "flowfm"
    config_type = FlowFMConfig
    default_encoder_lr_scale = 0.1  # flowfm.training.trainer; docs/results.md: full rate degraded the HAPT probe
    optional_state_keys = ("z_bank",)  # checkpoints from before the representation bank load with an empty one

    def __init__(self, config: Optional[FlowFMConfig] = None, backend: Optional[str] = None):
        super().__init__()
        self.config = config if config is not None else FlowFMConfig()
        cfg = self.config
        self.encoder = ResNetEncoder(cfg.in_channels, cfg.encoder_width)
        self.z_dim = self.encoder.out_dim
        self.velocity_net = UNet1d(cfg.in_channels, self.z_dim, cfg.unet_channels, cfg.unet_blocks, cfg.cond_dim,
                                   cfg.groups, cfg.z_norm, cfg.z_rank, cfg.time_embedding_scale)
        self.normalizer = ChannelNormalizer(cfg.in_channels)
        self.null_z = nn.Parameter(torch.zeros(self.z_dim))
        self.register_buffer("z_bank", torch.zeros(0, self.z_dim))
        self.backend = backend
        self.set_backend(backend)

    def set_backend(self, backend: Optional[str]) -> "FlowFM":
        """Kernel backend for the conv blocks, loss and solver steps: None (``$FLOWFM_BACKEND``/auto), ``"auto"``,
        ``"eager"``, ``"triton"`` or ``"cuda"``."""
        if backend is not None:
            flowfm_kernels.requested_backend(backend)
        self.backend = backend
        self.velocity_net.set_backend(backend)
        return self

    def fit_normalizer(self, x) -> "FlowFM":
        """Set the per-channel mean/std of the generator's data space from windows x (N, C, L)."""
        self.normalizer.fit(x)
        return self

    def _check_input(self, x: torch.Tensor, name: str = "x") -> None:
        check_window_batch(x, self.config.in_channels, name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Windows in g (B, C, L) -> representations z (B, D), in the module's current mode (the training path:
        in train mode BatchNorm uses batch statistics and updates its running ones). To read representations,
        use :meth:`embed` (eval mode, no gradients, batch-independent, standardise z before a linear probe)."""
        self._check_input(x)
        with nvtx_range("flowfm/encode"):
            return self.encoder(x)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """v(x_t, t, z) in normalised space: x_t (B, C, L), t (B,), z (B, D) -> (B, C, L)."""
        with nvtx_range("flowfm/velocity"):
            return self.velocity_net(x_t, t, z)

    def set_z_bank(self, z: torch.Tensor) -> "FlowFM":
        """Store representations z (K, D) of training windows: the prior that unconditional sampling draws its
        conditions from (:mod:`flowfm.training.representation_bank`); K = 0 empties the bank."""
        if not torch.is_tensor(z) or z.dim() != 2 or z.shape[1] != self.z_dim:
            shape = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            raise ValueError(f"a representation bank must have shape (K, {self.z_dim}), got {shape}")
        if not torch.isfinite(z).all():
            raise ValueError("a representation bank must be finite; it contains NaN or inf")
        self.z_bank = z.detach().to(self.null_z.device, self.null_z.dtype).clone()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        bank = state_dict.get(prefix + "z_bank")
        if bank is None:  # checkpoints written before the bank existed: an empty bank
            state_dict[prefix + "z_bank"] = self.z_bank
        elif bank.shape != self.z_bank.shape:  # the stored bank decides its own size K
            self.z_bank = torch.empty_like(bank, device=self.z_bank.device, dtype=self.z_bank.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def null_condition(self, batch: int) -> torch.Tensor:
        return self.null_z.expand(batch, -1)

    def drop_condition(self, z: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Replace z[b] by the null vector where ``drop[b]`` is True."""
        return torch.where(drop[:, None], self.null_z.to(z.dtype).expand_as(z), z)

    def training_condition(self, view: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """z~ of the joint loss: E(view), detached under ``stop_grad_encoder``, the null vector where ``drop``."""
        z = self.encode(view)
        if self.config.stop_grad_encoder:
            z = z.detach()
        return self.drop_condition(z, drop)

    def loss(self, x: torch.Tensor, *, x0: Optional[torch.Tensor] = None, t: Optional[torch.Tensor] = None,
             drop: Optional[torch.Tensor] = None, view: Optional[torch.Tensor] = None,
             shifted: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
             reduction: str = "mean") -> torch.Tensor:
        """Joint flow-matching loss of a batch x (B, C, L) in g. Random draws (noise ``x0``, times ``t``, condition
        ``drop`` mask, encoder ``view``) come from ``generator`` unless passed explicitly; ``shifted`` (B, C, L)
        are the time-shifted cuts the ``shift`` encoder views need (:func:`flowfm.views.encoder_view`)."""
        self._check_input(x)
        cfg, b = self.config, x.shape[0]
        with nvtx_range("flowfm/loss"):
            x1 = self.normalizer.normalize(x)
            if x0 is None:
                x0 = rng.randn(x1.shape, generator, device=x.device, dtype=x1.dtype)
            if t is None:
                t = sample_t(b, cfg.t_sampling, cfg.logit_normal_mean, cfg.logit_normal_std, generator, x.device)
            if drop is None:
                drop = rng.rand(b, generator, device=x.device) < cfg.p_uncond
            if view is None:
                view = encoder_view(x, cfg, generator, shifted)
            z = self.training_condition(view, drop)
            x_t = flowfm_kernels.interpolate(x0, x1, t, cfg.sigma_min, backend=self.backend)
            v = self.velocity(x_t, t, z)
            return flowfm_kernels.flow_matching_loss(v, x0, x1, cfg.sigma_min, reduction, backend=self.backend)

    def num_parameters(self, part: str = "all") -> int:
        module = {"all": self, "encoder": self.encoder, "velocity": self.velocity_net}[part]
        return sum(p.numel() for p in module.parameters())
