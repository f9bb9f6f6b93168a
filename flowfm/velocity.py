"""The velocity network v(x_t, t, z): a 1D U-Net built from FiLM-conditioned conv blocks.

Conditioning vector, with t (B,) in [0, 1] and z (B, D):

    e = MLP(sinusoidal(a t)) + P(N(z))                                   (B, E)

a is ``time_embedding_scale`` (:class:`~flowfm.config.FlowFMConfig`): the embedding's fastest component has period
2 pi / a in t. The old a = 1000 (the DDPM convention of t in timesteps) makes the field oscillate in t with a
period of ~0.006, far below any few-step grid, so no solver showed its order below ~256 steps (docs/results.md "Solver
order"); new FlowFM configs use a smaller a, configs written without the field load with 1000.

N is, with ``z_norm="layer"`` (the default), a LayerNorm without affine parameters (each z standardised over its
D features, so the generator cannot read the overall scale of z) or, with ``"none"``, the identity; P is
Linear(D, E) or, with ``z_rank=r``, the rank-r bottleneck Linear(r, E) o Linear(D, r, no bias), through which the
generator sees only r directions of z.

Conv block (the op the fused kernels implement, :func:`flowfm_kernels.conv_block`):

    y = SiLU( GN(Conv1d_k3(h)) * (1 + s(e)) + b(e) )                     s, b = Linear(e) split, (B, C_out) each

ResBlock: two conv blocks plus a 1x1 skip when channels change. Levels ``channels = (c0, c1, ...)`` with stride-2
conv downsampling, nearest-upsample + conv, skip concatenation and a zero-initialised output conv. Any L >= 16
works: the input is zero-padded on the right to a multiple of 2^(levels-1) and the output cropped back.

Precision: a float64 network computes in float64 throughout (the embedding from float64 t, the conv blocks through
their eager reference, which keeps float64, since the fused kernels compute in float32); other dtypes take the
kernels (float32 arithmetic), with the embedding computed in float32.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

import flowfm_kernels
from flowfm.config import Z_NORMS, FlowFMConfig


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0,
                         scale: float = 1000.0) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, dim): [cos(a t w_k), sin(a t w_k)], a = ``scale``, w_k = max_period^(-k / (dim/2)),
    k = 0 .. dim/2 - 1. Computed in float64 for float64 t, else in float32."""
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    angles = scale * t.to(dtype)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class ConvBlock(nn.Module):
    """SiLU(GN(Conv1d_k3(x)) * (1 + s(e)) + b(e)): (B, C_in, L), e (B, E) -> (B, C_out, L)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=3, padding=1)
        self.norm = nn.GroupNorm(groups, c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.backend: Optional[str] = None

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(e).chunk(2, dim=-1)
        # float64: the eager reference keeps float64 (the fused kernels compute in float32)
        backend = "eager" if x.dtype == torch.float64 else self.backend
        return flowfm_kernels.conv_block(x, self.conv.weight, self.conv.bias, self.norm.weight, self.norm.bias,
                                         scale, shift, self.norm.num_groups, self.norm.eps, backend=backend)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int, groups: int):
        super().__init__()
        self.block1 = ConvBlock(c_in, c_out, cond_dim, groups)
        self.block2 = ConvBlock(c_out, c_out, cond_dim, groups)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x, e), e) + self.skip(x)


class Upsample(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet1d(nn.Module):
    """v(x_t, t, z): x_t (B, C, L) normalised, t (B,), z (B, z_dim) -> (B, C, L)."""

    def __init__(self, in_channels: int, z_dim: int, channels=(32, 64, 128), blocks: int = 1, cond_dim: int = 128,
                 groups: int = 8, z_norm: str = FlowFMConfig.z_norm, z_rank: Optional[int] = None,
                 time_embedding_scale: float = FlowFMConfig.time_embedding_scale):
        super().__init__()
        if not (math.isfinite(time_embedding_scale) and time_embedding_scale > 0):
            raise ValueError(f"time_embedding_scale must be a finite number > 0, got {time_embedding_scale}")
        self.time_embedding_scale = float(time_embedding_scale)
        if z_norm not in Z_NORMS:
            raise ValueError(f"z_norm={z_norm!r} is unknown; expected one of {Z_NORMS}")
        if z_rank is not None and not 1 <= z_rank <= z_dim:
            raise ValueError(f"z_rank must be in [1, z_dim={z_dim}] or None, got {z_rank}")
        self.channels = tuple(channels)
        self.time_dim = cond_dim
        self.time_mlp = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.z_norm = nn.LayerNorm(z_dim, elementwise_affine=False) if z_norm == "layer" else nn.Identity()
        self.z_proj = (nn.Linear(z_dim, cond_dim) if z_rank is None
                       else nn.Sequential(nn.Linear(z_dim, z_rank, bias=False), nn.Linear(z_rank, cond_dim)))
        self.cond_act = nn.SiLU()
        self.in_conv = nn.Conv1d(in_channels, channels[0], 3, padding=1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(channels):
            self.down_blocks.append(nn.ModuleList([ResBlock(c, c, cond_dim, groups) for _ in range(blocks)]))
            if i + 1 < len(channels):
                self.downsamples.append(nn.Conv1d(c, channels[i + 1], 3, stride=2, padding=1))
        self.mid = ResBlock(channels[-1], channels[-1], cond_dim, groups)
        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(channels):
            self.up_blocks.append(nn.ModuleList(
                [ResBlock(2 * c if j == 0 else c, c, cond_dim, groups) for j in range(blocks)]))
            if i + 1 < len(channels):
                self.upsamples.append(Upsample(channels[i + 1], c))
        self.out_norm = nn.GroupNorm(groups, channels[0])
        self.out_conv = nn.Conv1d(channels[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    @property
    def length_multiple(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def set_backend(self, backend: Optional[str]) -> None:
        for module in self.modules():
            if isinstance(module, ConvBlock):
                module.backend = backend

    def condition(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """e = SiLU(MLP(sinusoidal(a t)) + P(N(z))) (B, cond_dim); the SiLU feeds the FiLM linears."""
        embedding = sinusoidal_embedding(t, self.time_dim, scale=self.time_embedding_scale)
        time_embedding = self.time_mlp(embedding.to(z.dtype))
        return self.cond_act(time_embedding + self.z_proj(self.z_norm(z)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        pad = (-length) % self.length_multiple
        h = F.pad(x, (0, pad)) if pad else x
        e = self.condition(t, z)
        h = self.in_conv(h)
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, e)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        h = self.mid(h, e)
        for i in reversed(range(len(self.channels))):
            if i < len(self.upsamples):
                h = self.upsamples[i](h)
            h = torch.cat([h, skips[i]], dim=1)
            for block in self.up_blocks[i]:
                h = block(h, e)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out[..., :length] if pad else out
