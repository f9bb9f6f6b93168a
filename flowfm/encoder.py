"""The representation encoder E(x) -> z: SSL-Wearables' 1D ResNet-V2 ("harnet10" at width 1).

Five stages; stage i is

    Conv1d(k=5, circular padding, no bias) -> n_i pre-activation ResBlocks -> BN -> ReLU -> BlurPool(f_i, order_i)

with (channels, blocks, f, order) = (64,2,2,2) (128,2,2,2) (256,2,5,1) (512,2,5,1) (1024,0,3,1) at width 1, so a
(B, 3, 300) window goes 300 -> 150 -> 75 -> 15 -> 3 -> 1 and a global average pool gives z (B, 1024). The input is
raw acceleration in g, so SSL-Wearables-style inputs work unchanged; other lengths work through the pooling (a window
shorter than ``min_length`` is first tiled periodically, consistent with the circular padding).
:meth:`ResNetEncoder.pooled_stages` reads the global-average-pooled output of every stage instead (an intermediate
readout for frozen-feature evaluation: (B, 64 + 128 + 256 + 512 + 1024) at width 1, its last block being z).
:class:`EmbedMixin` gives every model class ``embed(x, batch_size=...)``: eval mode, no gradients,
batch-independent z, unit check and resampling to the model's rate.
"""
from __future__ import annotations

from typing import Optional

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


class EmbedMixin:
    """:meth:`embed`, the representation users read, shared by every model class (FlowFM, DiffusionFM,
    SSLWearables): each has ``encode``, ``encoder`` and (from :class:`~flowfm.checkpoint.CheckpointMixin`)
    ``data_spec``."""

    def embed(self, x, batch_size: int = 256, *, fs: Optional[float] = None, unit: Optional[str] = None,
              device=None) -> torch.Tensor:
        """Windows x (N, C, L) in g -> representations z (N, D) float32 on the CPU, batch-independent.

        The model runs in eval mode (BatchNorm reads its running statistics, so a window's z does not depend on
        the other windows of its batch), without gradients, ``batch_size`` windows at a time; its previous
        train/eval mode is restored and no parameter or buffer changes. (``encode`` is the training-path call:
        in train mode its BatchNorm uses batch statistics and updates the stored ones.)

        Args:
            x: a tensor, numpy array, memmap or corpus (anything with ``len`` and slicing to (b, C, L)).
            batch_size: windows per forward pass (memory only: the result does not depend on it).
            fs: sampling rate of x in Hz; when it differs from the model's (``data_spec.sample_rate_hz``, 30 Hz by
                default) each window is first resampled to it (polyphase, anti-aliased). None: x is at the
                model's rate.
            unit: the unit of x. None: x must look like g by magnitude (a sample of windows is checked; values
                that look like m/s^2 or milli-g raise :class:`~flowfm.data.units.UnitError`); ``"g"``: used as
                is; ``"m/s2"`` / ``"mg"``: divided by 9.80665 / 1000 first.
            device: where the encoder runs (default: the model's device).

        Scale: z is small and its dimensions differ in scale (mean |z| of a trained small-preset encoder is
        about 0.04): **standardise the features** (e.g. sklearn's ``StandardScaler`` fit on the training windows'
        z) before a linear classifier, a distance or a clustering; on raw z an unscaled logistic regression can
        score near chance where the standardised one separates the classes (the library's probes all
        standardise, :mod:`flowfm.evaluation`).
        """
        from flowfm.data.units import check_unit, median_magnitude, sample_indices
        from flowfm.data.window_spec import windows_at_rate

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if getattr(x, "ndim", None) != 3:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"x must be windows of shape (N, C, L), got {shape}")
        device = torch.device(device) if device is not None else next(self.parameters()).device
        spec = self.data_spec

        def as_numpy(batch) -> np.ndarray:
            if torch.is_tensor(batch):
                return batch.detach().to("cpu", torch.float32).numpy()
            return np.asarray(batch, dtype=np.float32)

        n = len(x)
        per_g = 1.0
        if n:
            probe = as_numpy(x[sample_indices(n)])
            per_g = check_unit(median_magnitude(probe.transpose(0, 2, 1).reshape(-1, probe.shape[1])),
                               "x (the windows passed to embed)", unit)
        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, n, int(batch_size)):
                    batch = windows_at_rate(as_numpy(x[start:start + int(batch_size)]),
                                            fs if fs is not None else spec.sample_rate_hz, spec)
                    batch = torch.from_numpy(np.array(batch, dtype=np.float32)).to(device)  # a writable copy
                    if per_g != 1.0:
                        batch = batch / per_g
                    out.append(self.encode(batch).float().cpu())
        finally:
            self.train(was_training)
        if not out:
            return torch.zeros(0, self.encoder.out_dim)
        return torch.cat(out)
