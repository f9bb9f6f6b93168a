"""The diffusion joint model (docs/design.md §4): FlowFM's encoder, U-Net, normaliser, null vector, condition dropout,
encoder view and stop-gradient flag, trained as an epsilon-prediction DDPM instead of a flow.

Schedule (Ho et al. 2020), timesteps k = 0 .. T-1 (0-based; k = T-1 is the noisiest):

    beta_k = linspace(beta_start, beta_end, T)[k],   alpha_k = 1 - beta_k,   abar_k = prod_{i <= k} alpha_i

Training, with x (B, C, L) in g, x_d = normalise(x), eps ~ N(0, I), k ~ U{0, .., T-1}, z = E(view(x)):

    x_k = sqrt(abar_k) x_d + sqrt(1 - abar_k) eps
    L   = mean || eps_hat(x_k, k / T, z~) - eps ||^2,   z~ = null vector with probability p_uncond, else z

The epsilon network is FlowFM's U-Net unchanged: its time input is t = k / T in [0, 1), fed to the same sinusoidal
embedding (which multiplies by 1000, so for T = 1000 it sees the integer timestep, as in DDPM). Note the direction:
here t grows with the noise level, while FlowFM's t = 0 is noise.

Sampling (:meth:`DiffusionFM.generate`, reached through :func:`flowfm.fast_sample`), from x_{T-1} ~ N(0, I)
(the ``x0`` noise argument of the shared sampling API), with guidance eps = eps_null + w (eps_z - eps_null)
evaluated in one doubled batch:

    ddpm  ancestral, all T steps (``steps`` must equal T):
          x_{k-1} = (x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(alpha_k) + sigma_k n,   n ~ N(0, I),
          sigma_k^2 = beta_k (1 - abar_{k-1}) / (1 - abar_k)  (posterior variance), no noise at the last step
    ddim  eta = 0 over S = ``steps`` timesteps tau = round(linspace(T-1, 0, S)) (the first step starts at the
          noisiest timestep, the last ends at k = 0), with abar_{tau_{S}} := 1 after the last:
          x0_hat = (x - sqrt(1 - abar_k) eps) / sqrt(abar_k),   x <- sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps

Optional x0 clipping (``clip_x0 = c``, off by default; DDPM's "clip_denoised" for images): in both samplers the
estimate x0_hat is clamped to [-c, c] (normalised units) and eps re-derived from it,
eps <- (x_k - sqrt(abar_k) x0_hat) / sqrt(1 - abar_k), before the update. Near k = T-1, sqrt(abar_k) ~ 0.006, so an
eps error of 0.05 becomes an x0_hat error of ~8 and DDIM's deterministic trajectory leaves the data distribution;
clipping bounds that error.

NFE: ddpm T, ddim S (guidance doubles the batch, not the NFE).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from numbers import Integral
from typing import Optional

import numpy as np
import torch

import flowfm_kernels
from flowfm import rng
from flowfm.config import FlowFMConfig
from flowfm.model import FlowFM
from flowfm.profiling import nvtx_range
from flowfm.views import encoder_view

SAMPLING_METHODS = ("ddpm", "ddim")


@dataclass
class DiffusionConfig(FlowFMConfig):
    """:class:`~flowfm.config.FlowFMConfig` plus the DDPM schedule: ``T`` timesteps with betas linear from
    ``beta_start`` to ``beta_end``. The flow-only fields ``sigma_min``, ``t_sampling`` and ``logit_normal_*`` are
    not used by the diffusion model (timesteps are uniform integers)."""

    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    clip_x0: Optional[float] = None
    t_sampling: str = "uniform"  # unused here (integer timesteps are uniform); restated so configs read truthfully
    logit_normal_mean: float = 0.0
    time_embedding_scale: float = 1000.0  # t = k / T: one unit of a t per timestep k (DDPM's embedding), kept

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.T, bool) or not isinstance(self.T, Integral) or self.T < 2:
            raise ValueError(f"T must be an integer >= 2, got {self.T!r}")
        self.T = int(self.T)
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={self.beta_start}, "
                             f"beta_end={self.beta_end}")
        if self.clip_x0 is not None and not self.clip_x0 > 0:
            raise ValueError(f"clip_x0 must be None (off) or > 0 (normalised units), got {self.clip_x0}")


def linear_beta_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """betas (T,) float64, linear from beta_start to beta_end (DDPM)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """The S = ``steps`` DDIM timesteps, descending: round(linspace(T-1, 0, S)) (distinct for S <= T)."""
    if isinstance(steps, bool) or not isinstance(steps, Integral) or not 1 <= steps <= T:
        raise ValueError(f"DDIM needs 1 <= steps <= T={T}, got {steps!r}")
    taus = [int(k) for k in np.round(np.linspace(T - 1, 0, int(steps)))]
    assert len(set(taus)) == len(taus), taus
    return taus


def _seed_from(x: torch.Tensor) -> int:
    """A 63-bit seed from the bytes of x (so noise derived from a seeded x0 is reproducible)."""
    digest = hashlib.sha256(x.detach().float().cpu().contiguous().numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class DiffusionFM(FlowFM):
    """FlowFM's networks trained as an epsilon-prediction DDPM (method ``"diffusion"``); see the module docstring.

    Everything but the objective and the sampler is inherited from :class:`~flowfm.model.FlowFM`: ``encode``,
    the U-Net (here the epsilon network), the normaliser, ``null_z``, ``drop_condition``, the encoder view,
    ``stop_grad_encoder``, backends, save/load. The schedule is rebuilt from the config (float64, not stored in
    the weights), so checkpoints hold the same tensors as FlowFM's."""

    method = "diffusion"
    config_type = DiffusionConfig
    sampling_methods = SAMPLING_METHODS

    def __init__(self, config: Optional[DiffusionConfig] = None, backend: Optional[str] = None):
        config = config if config is not None else DiffusionConfig()
        if not isinstance(config, DiffusionConfig):
            raise TypeError(f"DiffusionFM needs a DiffusionConfig, got {type(config).__name__}")
        super().__init__(config, backend=backend)
        # float64 on the CPU and not buffers: model.to(dtype) must not round the schedule (bf16 would make
        # 1 - abar_k vanish); per-device copies are cached for the loss
        self._betas = linear_beta_schedule(config.T, config.beta_start, config.beta_end)
        self._alphas_cumprod = torch.cumprod(1.0 - self._betas, dim=0)
        self._abar_cache: dict[str, torch.Tensor] = {}

    @property
    def betas(self) -> torch.Tensor:
        """beta_k (T,), float64."""
        return self._betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_k = prod_{i <= k} (1 - beta_i) (T,), float64."""
        return self._alphas_cumprod

    def _abar_on(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._abar_cache:
            dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
            self._abar_cache[key] = self._alphas_cumprod.to(device, dtype)
        return self._abar_cache[key]

    # ------------------------------------------------------------------------------------------- training
    def eps(self, x_t: torch.Tensor, timesteps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """eps_hat(x_t, k, z): x_t (B, C, L) normalised, integer timesteps k (B,) in [0, T), z (B, D) -> (B, C, L).
        The U-Net sees t = k / T."""
        return self.velocity(x_t, timesteps.to(torch.float32) / self.config.T, z)

    def q_sample(self, x_data: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_k = sqrt(abar_k) x_data + sqrt(1 - abar_k) noise, per-sample k (B,); computed in float32."""
        abar = self._abar_on(x_data.device)[timesteps.to(x_data.device)][:, None, None]
        x_t = abar.sqrt().float() * x_data.float() + (1.0 - abar).sqrt().float() * noise.float()
        return x_t.to(x_data.dtype)

    def loss(self, x: torch.Tensor, *, noise: Optional[torch.Tensor] = None,
             timesteps: Optional[torch.Tensor] = None, drop: Optional[torch.Tensor] = None,
             view: Optional[torch.Tensor] = None, shifted: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None, reduction: str = "mean") -> torch.Tensor:
        """Joint DDPM loss of a batch x (B, C, L) in g. Random draws, in this order from ``generator`` unless
        passed explicitly: ``noise`` eps (B, C, L), integer ``timesteps`` (B,) in [0, T), condition ``drop``
        mask (B,), encoder ``view`` (B, C, L) (from the time-shifted cuts ``shifted`` under a ``shift`` view).
        ``reduction``: ``"mean"`` (scalar) or ``"per_sample"`` (B,)."""
        self._check_input(x)
        cfg, b = self.config, x.shape[0]
        if reduction not in ("mean", "per_sample"):
            raise ValueError(f"reduction={reduction!r}; expected 'mean' or 'per_sample'")
        with nvtx_range("flowfm/loss"):
            x_data = self.normalizer.normalize(x)
            if noise is None:
                noise = rng.randn(x_data.shape, generator, device=x.device, dtype=x_data.dtype)
            elif noise.shape != x.shape:
                raise ValueError(f"noise must have the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}")
            if timesteps is None:
                timesteps = rng.randint(0, cfg.T, (b,), generator, device=x.device)
            elif (timesteps.shape != (b,) or timesteps.dtype.is_floating_point or timesteps.dtype == torch.bool
                  or int(timesteps.min()) < 0 or int(timesteps.max()) >= cfg.T):
                raise ValueError(f"timesteps must be integers in [0, {cfg.T}) of shape ({b},)")
            if drop is None:
                drop = rng.rand(b, generator, device=x.device) < cfg.p_uncond
            if view is None:
                view = encoder_view(x, cfg, generator, shifted)
            z = self.training_condition(view, drop)
            x_t = self.q_sample(x_data, timesteps, noise)
            sq = (self.eps(x_t, timesteps, z).float() - noise.float()) ** 2
            return sq.mean() if reduction == "mean" else sq.flatten(1).mean(1)

    # ------------------------------------------------------------------------------------------- sampling
    def _guided_eps(self, x: torch.Tensor, k: int, cond: torch.Tensor, guidance: float,
                    backend: Optional[str]) -> torch.Tensor:
        """eps at timestep k for the sampler state x; the network runs in the model's dtype (that of ``cond``),
        the state keeps its own (as in the flow sampler)."""
        b, state_dtype = x.shape[0], x.dtype
        x = x.to(cond.dtype)
        kk = torch.full((b,), k, device=x.device, dtype=torch.long)
        if guidance == 1.0:
            return self.eps(x, kk, cond).to(state_dtype)
        e = self.eps(torch.cat([x, x]), torch.cat([kk, kk]), torch.cat([cond, self.null_condition(b).to(cond)]))
        return flowfm_kernels.guidance_combine(e[:b], e[b:], guidance, backend=backend).to(state_dtype)

    def _clipped_eps(self, x: torch.Tensor, eps: torch.Tensor, abar: float) -> torch.Tensor:
        """eps itself, or, with ``clip_x0 = c``, the eps implied by x0_hat clamped to [-c, c] (module docstring)."""
        c = self.config.clip_x0
        if c is None:
            return eps
        x0_hat = ((x - float(np.sqrt(1.0 - abar)) * eps) / float(np.sqrt(abar))).clamp(-c, c)
        return (x - float(np.sqrt(abar)) * x0_hat) / float(np.sqrt(1.0 - abar))

    def generate(self, x0: torch.Tensor, cond: torch.Tensor, steps: int, method: str = "ddim",
                 guidance: float = 1.0, backend: Optional[str] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Noise x0 = x_{T-1} (B, C, L) -> normalised samples (B, C, L) given conditions ``cond`` (B, D) (the null
        vector for unconditional sampling). ``method``: ``"ddpm"`` (ancestral; ``steps`` must equal T) or
        ``"ddim"`` (eta = 0, ``steps`` = S <= T). DDPM's per-step noise comes from ``generator`` or, when none is
        given (as from :func:`flowfm.fast_sample`), from a generator seeded by a hash of x0, so a seeded
        ``fast_sample`` call is reproducible."""
        if method not in SAMPLING_METHODS:
            raise ValueError(f"method={method!r} is unknown for the diffusion model; expected one of "
                             f"{SAMPLING_METHODS} (the flow solvers need a flow model)")
        T = self.config.T
        ac, betas = self._alphas_cumprod.numpy(), self._betas.numpy()
        x = x0.clone()
        with nvtx_range("flowfm/diffusion_sample"):
            if method == "ddpm":
                if steps != T:
                    raise ValueError(f"DDPM ancestral sampling runs all T={T} steps: pass steps={T} (or use "
                                     f"method='ddim' for fewer steps), got steps={steps}")
                if generator is None:
                    generator = torch.Generator(device=x0.device).manual_seed(_seed_from(x0))
                for k in reversed(range(T)):
                    with nvtx_range("flowfm/solver_step"):
                        eps = self._clipped_eps(x, self._guided_eps(x, k, cond, guidance, backend), ac[k])
                        x = (x - float(betas[k] / np.sqrt(1.0 - ac[k])) * eps) / float(np.sqrt(1.0 - betas[k]))
                        if k > 0:
                            var = betas[k] * (1.0 - ac[k - 1]) / (1.0 - ac[k])
                            noise = torch.randn(x.shape, generator=generator, device=generator.device,
                                                dtype=x.dtype).to(x.device)
                            x = x + float(np.sqrt(var)) * noise
                return x
            taus = ddim_timesteps(T, steps)
            for i, k in enumerate(taus):
                with nvtx_range("flowfm/solver_step"):
                    eps = self._clipped_eps(x, self._guided_eps(x, k, cond, guidance, backend), ac[k])
                    a, a_prev = ac[k], (ac[taus[i + 1]] if i + 1 < len(taus) else 1.0)
                    x0_hat = (x - float(np.sqrt(1.0 - a)) * eps) / float(np.sqrt(a))
                    x = float(np.sqrt(a_prev)) * x0_hat + float(np.sqrt(1.0 - a_prev)) * eps
            return x

    def nfe(self, method: str, steps: int) -> int:
        """Network evaluations of a sampling call (guidance doubles the batch, not the NFE)."""
        if method not in SAMPLING_METHODS:
            raise ValueError(f"method={method!r} is unknown; expected one of {SAMPLING_METHODS}")
        return self.config.T if method == "ddpm" else int(steps)
