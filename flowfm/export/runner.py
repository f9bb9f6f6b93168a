"""Few-step sampling and embedding under ONNX Runtime with numpy only (no torch at run time).

    runner = OrtRunner("export_dir")
    z = runner.encode(x)                                  # x (B, C, L) float32 in g -> z (B, D)
    x = runner.sample(z, steps=10, method="heun", x0=x0)  # -> windows (B, C, L) in g

The solver is the same fixed grid as :mod:`flowfm.solvers` (t_n = n / N, float32): with h = 1 / N and the guided
field g(x, t) = v_null + w (v_z - v_null) (w = 1: g = v_z),

    euler     x += h g(x, t)
    midpoint  x += h g(x + h/2 g(x, t), t + h/2)
    heun      x_p = x + h g(x, t);  x += h/2 (g(x, t) + g(x_p, t + h))

then x is de-normalised: x * std_c + mean_c.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

METHODS = ("euler", "midpoint", "heun")


class OrtRunner:
    def __init__(self, folder, threads: Optional[int] = None, providers=None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the ONNX runner needs onnxruntime: pip install 'flowfm[onnx]'") from exc
        folder = Path(folder)
        for name in ("encoder.onnx", "velocity.onnx", "sampler.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} is missing; write the folder with `flowfm export`")
        self.meta = json.loads((folder / "sampler.json").read_text())
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = providers or ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), options, providers=providers)
        self.velocity_session = ort.InferenceSession(str(folder / "velocity.onnx"), options, providers=providers)
        self.mean = np.asarray(self.meta["mean"], np.float32)[:, None]
        self.std = np.asarray(self.meta["std"], np.float32)[:, None]
        self.null_z = np.asarray(self.meta["null_z"], np.float32)

    def _check_x(self, x: np.ndarray, name: str) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        c = self.meta["in_channels"]
        if x.ndim != 3 or x.shape[1] != c:
            raise ValueError(f"{name} must have shape (B, {c}, L), got {x.shape}")
        fixed = self.meta.get("length")
        if fixed is not None and x.shape[2] != fixed:
            raise ValueError(f"this export is for windows of length {fixed} (export again with --length); {name} has length {x.shape[2]}")
        batch = self.meta.get("batch")
        if batch is not None and x.shape[0] != batch:
            raise ValueError(f"this export has a fixed batch {batch}; {name} has batch {x.shape[0]}")
        return x

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Windows (B, C, L) in g -> representations z (B, D)."""
        return self.encoder.run(["z"], {"x": self._check_x(x, "x")})[0]

    def velocity(self, x: np.ndarray, t: np.ndarray, z: np.ndarray) -> np.ndarray:
        """v(x, t, z) in normalised space: x (B, C, L), t (B,), z (B, D) -> (B, C, L)."""
        return self.velocity_session.run(["v"], {"x": np.ascontiguousarray(x, np.float32),
                                                 "t": np.ascontiguousarray(t, np.float32),
                                                 "z": np.ascontiguousarray(z, np.float32)})[0]

    def sample(self, z: np.ndarray, steps: int = 10, method: str = "heun", guidance: float = 1.0,
               x0: Optional[np.ndarray] = None, length: Optional[int] = None, seed: int = 0) -> np.ndarray:
        """Windows (B, C, L) in g conditioned on z (B, D); x0 (B, C, L) noise, default N(0, I) from ``seed``."""
        if method not in METHODS:
            raise ValueError(f"method={method!r} is unknown for the ONNX runner; expected one of {METHODS}")
        if int(steps) < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        z = np.ascontiguousarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.meta["z_dim"]:
            raise ValueError(f"z must have shape (B, {self.meta['z_dim']}), got {z.shape}")
        b = z.shape[0]
        if x0 is None:
            length = self.meta["length"] if length is None else int(length)
            x0 = np.random.default_rng(seed).standard_normal((b, self.meta["in_channels"], length), np.float32)
        x = self._check_x(x0, "x0").copy()
        guided = guidance != 1.0
        zz = np.concatenate([z, np.broadcast_to(self.null_z, z.shape)]) if guided else z
        w = np.float32(guidance)

        def field(x, t):
            tt = np.full(b, t, np.float32)
            if not guided:
                return self.velocity(x, tt, zz)
            v = self.velocity(np.concatenate([x, x]), np.concatenate([tt, tt]), zz)
            return v[b:] + w * (v[:b] - v[b:])

        grid = np.linspace(0.0, 1.0, int(steps) + 1, dtype=np.float32)
        for n in range(int(steps)):
            t, h = grid[n], grid[n + 1] - grid[n]
            if method == "euler":
                x += h * field(x, t)
            elif method == "midpoint":
                x += h * field(x + (h / 2) * field(x, t), t + h / 2)
            else:
                g1 = field(x, t)
                g2 = field(x + h * g1, t + h)
                x += (h / 2) * (g1 + g2)
        return x * self.std + self.mean
