"""What a model's windows are: sampling rate, length, hop, unit and channel order (stored in every checkpoint).

A :class:`WindowSpec` travels in a checkpoint's ``config.json`` under ``"data"``; checkpoints written before it
existed read as the library's convention (docs/design.md §2: 30 Hz, the config's window length, hop = L / 2, g, x/y/z).
:func:`windows_at_rate` brings windows sampled at another rate to the model's rate (polyphase, anti-aliased,
:func:`~flowfm.data.resample.resample_to`): data are never fed to a model at a rate it was not trained on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from .resample import rate_ratio, resample_to

__all__ = ["WindowSpec", "default_channels", "rate_for", "windows_at_rate"]


def default_channels(n: int) -> tuple[str, ...]:
    """``("x", "y", "z")`` for 3 channels, else ``("ch0", "ch1", ...)``."""
    return ("x", "y", "z") if n == 3 else tuple(f"ch{i}" for i in range(n))


@dataclass(frozen=True)
class WindowSpec:
    """The windows a model was trained on: ``window_length`` L samples at ``sample_rate_hz``, cut every ``hop``
    samples, acceleration in ``unit`` (always ``"g"`` after the readers' conversion), channels in ``channels`` order.
    """

    sample_rate_hz: float = 30.0
    window_length: int = 300
    hop: int = 150
    unit: str = "g"
    channels: tuple[str, ...] = ("x", "y", "z")

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        checks = [
            (math.isfinite(self.sample_rate_hz) and self.sample_rate_hz > 0,
             f"sample_rate_hz must be positive, got {self.sample_rate_hz}"),
            (self.window_length >= 1, f"window_length must be >= 1, got {self.window_length}"),
            (self.hop >= 1, f"hop must be >= 1, got {self.hop}"),
            (self.unit == "g", f"unit must be 'g' (readers convert to g), got {self.unit!r}"),
            (len(self.channels) >= 1, "channels must name at least one channel"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def default(cls, in_channels: int = 3, window: int = 300) -> "WindowSpec":
        """The library's convention for a model of ``in_channels`` x ``window``: 30 Hz, hop = window // 2, g."""
        return cls(30.0, int(window), max(1, int(window) // 2), "g", default_channels(in_channels))

    @property
    def window_seconds(self) -> float:
        return self.window_length / self.sample_rate_hz

    @property
    def hop_seconds(self) -> float:
        return self.hop / self.sample_rate_hz

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict, in_channels: int = 3, window: int = 300) -> "WindowSpec":
        """Read a stored spec; missing fields take :meth:`default` values (older checkpoints)."""
        base = cls.default(in_channels, window).to_dict()
        unknown = set(data) - set(base)
        if unknown:
            raise ValueError(f"unknown WindowSpec fields {sorted(unknown)}; known: {sorted(base)}")
        return cls(**{**base, **data})


def rate_for(length: int, fs: Optional[float], spec: WindowSpec, source: str = "x") -> float:
    """The sampling rate to treat windows of ``length`` samples at ``fs`` Hz as: ``fs`` itself when known; when
    ``fs`` is None (unknown), the model's rate if ``length`` equals ``spec.window_length``, else ValueError naming
    ``source`` and asking for the rate (windows are never fed to a model at a rate it was not trained on)."""
    if fs is not None:
        return float(fs)
    if length != spec.window_length:
        raise ValueError(
            f"{source}: windows of {length} samples, but the model's are {spec.window_length} "
            f"({spec.window_seconds:g} s at {spec.sample_rate_hz:g} Hz), and the data's sampling rate is unknown: "
            f"state it (--fs HZ, or 'fs' in the folder's meta.json) so the windows can be resampled to "
            f"{spec.sample_rate_hz:g} Hz")
    return spec.sample_rate_hz


def windows_at_rate(x: Any, fs: Optional[float], spec: WindowSpec, source: str = "x") -> np.ndarray:
    """Windows ``x`` (N, C, L) at ``fs`` Hz as windows at the model's rate ``spec.sample_rate_hz``: each window
    resampled along time (polyphase, :func:`~flowfm.data.resample.resample_to`) to ``ceil(L * up / down)`` samples.
    ``fs`` None (unknown) follows :func:`rate_for`. Returns ``x`` itself when no resampling is needed, else float32.
    """
    fs = rate_for(x.shape[-1], fs, spec, source)
    up, down = rate_ratio(fs, spec.sample_rate_hz)
    if up == down:
        return x
    return resample_to(np.asarray(x, dtype=np.float32), fs, spec.sample_rate_hz, axis=-1)
