"""Write a FlowFM model as ONNX graphs plus the constants the ORT runner needs.

Folder layout written by :func:`export_onnx`:

    encoder.onnx    x (B, C, L) in g            -> z (B, D)
    velocity.onnx   x (B, C, L) normalised, t (B,), z (B, D) -> v (B, C, L)
    sampler.json    channel mean/std (C,), null vector (D,), window length, channels, z_dim, batch/length axes

The batch is a dynamic axis (``batch`` fixes it instead); the window length is fixed per export (the encoder's
circular padding traces into length-specific slices), so export once per length served. The graphs are traced
from the eager kernels (backend "eager"), in float32.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from flowfm.data.atomic import atomic_write_text

FORMAT_VERSION = 1
#: the files an export writes (and ``flowfm export --overwrite`` replaces)
EXPORT_FILES = ("encoder.onnx", "velocity.onnx", "sampler.json")


class _Encoder(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class _Velocity(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(x, t, z)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list, outputs: list, axes: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    tmp.replace(path)


def check_export_args(model, batch: Optional[int], length: Optional[int]) -> None:
    """ValueError naming the problem for what :func:`export_onnx` cannot export (before anything is written)."""
    if not hasattr(model, "velocity_net") or not hasattr(model, "encoder"):
        raise ValueError(f"ONNX export needs a FlowFM model (encoder + velocity network), got {type(model).__name__}")
    if batch is not None and not 1 <= batch <= 65536:
        raise ValueError(f"batch must be in 1..65536 or omitted (dynamic), got {batch}")
    if length is not None and not 16 <= length <= 1_000_000:
        raise ValueError(f"length must be in 16..1000000 samples, got {length}")


def export_onnx(model, out, batch: Optional[int] = None, length: Optional[int] = None) -> Path:
    """Export ``model`` (a FlowFM) to folder ``out``; ``batch`` None = dynamic batch axis; ``length`` (default the
    training window) is the window length the graphs accept."""
    check_export_args(model, batch, length)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).float().cpu().eval()
    m.set_backend("eager")
    cfg = m.config
    length = cfg.window if length is None else int(length)
    b = batch or 2
    x = torch.randn(b, cfg.in_channels, length)
    t = torch.rand(b)
    z = torch.randn(b, m.z_dim)
    dyn = {} if batch is not None else {0: "batch"}
    dyn_x = dict(dyn)
    with torch.no_grad():
        _export(_Encoder(m.encoder), (x,), out / "encoder.onnx", ["x"], ["z"],
                {"x": dyn_x, "z": dict(dyn)})
        _export(_Velocity(m.velocity_net), (x, t, z), out / "velocity.onnx", ["x", "t", "z"], ["v"],
                {"x": dyn_x, "t": dict(dyn), "z": dict(dyn), "v": dyn_x})
    meta = {"format_version": FORMAT_VERSION, "in_channels": cfg.in_channels, "z_dim": m.z_dim,
            "window": cfg.window, "length": length, "batch": batch,
            "length_multiple": m.velocity_net.length_multiple,
            "mean": m.normalizer.mean.tolist(), "std": m.normalizer.std.tolist(),
            "null_z": m.null_z.detach().tolist()}
    atomic_write_text(out / "sampler.json", json.dumps(meta, indent=1))
    return out
