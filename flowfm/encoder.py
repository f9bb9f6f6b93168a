"""The representation encoder E(x) -> z: SSL-Wearables' 1D ResNet-V2 ("harnet10" at width 1).

Five stages; stage i is

    Conv1d(k=5, circular padding, no bias) -> n_i pre-activation ResBlocks -> BN -> ReLU -> BlurPool(f_i, order_i)

with (channels, blocks, f, order) = (64,2,2,2) (128,2,2,2) (256,2,5,1) (512,2,5,1) (1024,0,3,1) at width 1, so a
(B, 3, 300) window goes 300 -> 150 -> 75 -> 15 -> 3 -> 1 and a global average pool gives z (B, 1024). The input is
raw acceleration in g, so SSL-Wearables-style inputs work unchanged; other lengths work through the pooling (a window
shorter than ``min_length`` is first tiled periodically, consistent with the circular padding).
:meth:`ResNetEncoder.pooled_stages` reads the global-average-pooled output of every stage instead (an intermediate
readout for frozen-feature evaluation: (B, 64 + 128 + 256 + 512 + 1024) at width 1, its last block being z).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

def check_window_batch(x, in_channels: int, name: str = "x", min_length: int = 16) -> None:
    """Raise a clear ValueError unless x is a (B, in_channels, L >= min_length) tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"{name} must be a tensor of shape (B, C, L), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} has {x.shape[1]} channels; this model expects {in_channels}")
    if x.shape[2] < min_length:
        raise ValueError(f"{name} has length {x.shape[2]}; windows must have at least {min_length} samples")


READOUTS = ("z", "stages")   # what a frozen encoder is read through: forward (z) or pooled_stages


HARNET10_STAGES = ((64, 2, 2, 2), (128, 2, 2, 2), (256, 2, 5, 1), (512, 2, 5, 1), (1024, 0, 3, 1))


def _conv5(c_in: int, c_out: int) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, kernel_size=5, padding=2, padding_mode="circular", bias=False)


class PreActResBlock(nn.Module):
    """x + Conv(ReLU(BN(Conv(ReLU(BN(x))))))   (B, C, L) -> (B, C, L)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU(inplace=True), _conv5(channels, channels),
                                  nn.BatchNorm1d(channels), nn.ReLU(inplace=True), _conv5(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class BlurPool1d(nn.Module):
    """Anti-aliased downsampling: depthwise conv with a normalised box filter of length f convolved with itself
    ``order`` times (binomial-like kernel of length f + order (f - 1)), stride f. (B, C, L) -> (B, C, ~L/f)."""

    def __init__(self, channels: int, factor: int, order: int):
        super().__init__()
        if factor < 2 or (order * (factor - 1)) % 2:
            raise ValueError(f"BlurPool1d needs factor >= 2 and an even order*(factor-1); got {factor}, {order}")
        kernel = np.ones(factor)
        for _ in range(order):
            kernel = np.convolve(kernel, np.ones(factor))
        kernel = kernel / kernel.sum()
        self.stride, self.padding = factor, order * (factor - 1) // 2
        self.register_buffer("kernel", torch.tensor(kernel, dtype=torch.float32).repeat(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv1d(x, self.kernel.to(x.dtype), stride=self.stride, padding=self.padding,
                                    groups=x.shape[1])


class ResNetEncoder(nn.Module):
    """(B, C, L) in g -> z (B, D) with D = round(1024 * width). ``width`` scales every stage's channels.

    ``stage_dims``: the channel count of each stage (its last entry is ``out_dim``); every stage of ``features``
    ends with a :class:`BlurPool1d`."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, stages=HARNET10_STAGES):
        super().__init__()
        layers, c_in, self.stage_dims = [], in_channels, []
        for channels, blocks, factor, order in stages:
            c_out = max(8, int(round(channels * width)))
            layers += [_conv5(c_in, c_out), *[PreActResBlock(c_out) for _ in range(blocks)],
                       nn.BatchNorm1d(c_out), nn.ReLU(inplace=True), BlurPool1d(c_out, factor, order)]
            self.stage_dims.append(c_out)
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in
        self.min_length = self._min_valid_length()

    def _stage_lengths(self, length: int) -> list[int]:
        lengths = [length]
        for module in self.features:
            if isinstance(module, BlurPool1d):
                k = module.kernel.shape[-1]
                length = (length + 2 * module.padding - k) // module.stride + 1
                lengths.append(length)
        return lengths

    def _min_valid_length(self) -> int:
        """Shortest input whose every stage keeps >= 2 samples before its circular convs and >= 1 at the end."""
        length = 2
        while True:
            lengths = self._stage_lengths(length)
            if all(n >= 2 for n in lengths[:-1]) and lengths[-1] >= 1:
                return length
            length += 1

    def _tile_short(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, C, max(L, min_length)): a window shorter than ``min_length`` is tiled periodically,
        consistent with the circular padding of every conv; longer ones are returned unchanged."""
        if x.shape[-1] >= self.min_length:
            return x
        reps = -(-self.min_length // x.shape[-1])
        return x.repeat(1, 1, reps)[..., :self.min_length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) in g -> z (B, out_dim): the global average pool of the last stage's output."""
        return self.features(self._tile_short(x)).mean(dim=-1)

    def pooled_stages(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) in g -> (B, sum(stage_dims)): the global average pool (over time) of every stage's output
        (after its BlurPool1d), concatenated in stage order; the last ``out_dim`` columns equal ``forward(x)``."""
        h, pooled = self._tile_short(x), []
        for module in self.features:
            h = module(h)
            if isinstance(module, BlurPool1d):
                pooled.append(h.mean(dim=-1))
        return torch.cat(pooled, dim=1)
