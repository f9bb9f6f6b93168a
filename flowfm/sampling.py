"""``flowfm.fast_sample``: the one entry point for generating windows from a trained model.

    x = fast_sample(model, z=z, steps=10, method="heun")         # conditioned on representations z (B, D)
    x = fast_sample(model, x_ref=windows, steps=10)              # conditioned on E(windows)
    x = fast_sample(model, n=16, steps=10)                       # unconditional: z drawn from the model's prior

Noise x0 ~ N(0, I) in the normalised space (drawn from ``generator`` for reproducibility), integrated from t = 0 to
1 with the chosen solver, then de-normalised to g. The ODE state, time grid and steps are float64 for a float64
model (end to end; the output is float64) and float32 otherwise (fp16 / bf16 networks included); the noise is
drawn in float32 and cast, so a model gets the same noise from the same ``generator`` whatever its dtype.
Unconditional sampling (``n=``) draws its conditions from the ``prior``: ``"bank"`` draws n rows of the
representation bank (``model.z_bank``, representations of training windows stored by pretraining:
p(x) = E_z p(x | z)), ``"null"`` uses the null vector for every row, ``"auto"`` the bank when the model has one,
else the null vector. ``guidance`` w != 1 uses v = v_null + w (v_z - v_null) with both
branches evaluated in one doubled batch. Same call on CPU or GPU; ``backend`` picks the kernels
(None: ``$FLOWFM_BACKEND`` / auto).
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Optional

import torch

from flowfm.profiling import nvtx_range
from flowfm.solvers import METHODS, integrate, state_dtype, time_grid
from flowfm.null_condition import null_fit_needed
from flowfm_kernels import graphs, requested_backend


PRIORS = ("auto", "bank", "null")


def _prior_condition(model, n: int, prior: str, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Conditions (n, D) of unconditional sampling: bank rows drawn uniformly (from ``generator``) or the null."""
    bank = getattr(model, "z_bank", None)
    has_bank = bank is not None and bank.shape[0] > 0
    if prior == "auto":
        prior = "bank" if has_bank else "null"
    if prior == "bank":
        if not has_bank:
            raise ValueError("prior='bank' needs a representation bank, and this model has none (pretraining "
                             "fills it; or flowfm.training.representation_bank.fill_representation_bank)")
        device = generator.device if generator is not None else bank.device
        rows = torch.randint(bank.shape[0], (n,), generator=generator, device=device).to(bank.device)
        return bank[rows]
    if null_fit_needed(model):
        raise ValueError("this model was trained without condition dropout (p_uncond = 0) and its null vector was "
                         "never fitted: use prior='bank' (the default when the model has a representation bank) "
                         "or fit one with flowfm.training.null_fit.fit_null_vector")
    return model.null_condition(n)


def _finite_or_unchecked(t: torch.Tensor) -> bool:
    """False if a CPU tensor holds NaN or inf. CUDA tensors are not checked: reading the answer on the host would
    synchronise with the GPU on every call, inside the latency path that the CUDA graph exists to shorten; a
    non-finite condition there yields non-finite samples instead of an error."""
    return t.device.type != "cpu" or bool(torch.isfinite(t).all())


def _validated_condition(model, z, x_ref, n, prior: str = "auto",
                         generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, bool]:
    """Returns (z (B, D), conditional?)."""
    given = [name for name, value in (("z", z), ("x_ref", x_ref)) if value is not None]
    if len(given) > 1:
        raise ValueError("pass at most one of z= and x_ref= (x_ref is encoded into z)")
    if x_ref is not None:
        if not torch.is_tensor(x_ref) or not _finite_or_unchecked(x_ref):
            raise ValueError("x_ref must be a finite tensor of shape (B, C, L) in g")
        z = model.encode(x_ref.to(model.null_z.device, model.null_z.dtype))
    if z is not None:
        if not torch.is_tensor(z) or z.dim() != 2 or z.shape[1] != model.z_dim:
            shape = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            raise ValueError(f"z must have shape (B, {model.z_dim}) for this model, got {shape}")
        if not _finite_or_unchecked(z):
            raise ValueError("z contains NaN or inf")
        if n is not None and n != z.shape[0]:
            raise ValueError(f"n={n} disagrees with the batch of z ({z.shape[0]}); leave n out when conditioning")
        return z.to(model.null_z.device, model.null_z.dtype), True
    if n is None:
        raise ValueError("pass z=, x_ref= or n= (the number of unconditional samples)")
    if not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return _prior_condition(model, int(n), prior, generator), False


def fast_sample(model, z: Optional[torch.Tensor] = None, x_ref: Optional[torch.Tensor] = None,
                n: Optional[int] = None, steps: int = 10, method: str = "heun", guidance: float = 1.0,
                generator: Optional[torch.Generator] = None, length: Optional[int] = None,
                backend: Optional[str] = None, cuda_graph: Optional[bool] = None,
                prior: str = "auto") -> torch.Tensor:
    """Generate windows (B, C, L) in g, channels-first (``flowfm sample`` writes them channels-last, (N, L, C), the
    X.npy layout); see the module docstring. ``length`` defaults to the training window.
    ``prior`` (unconditional sampling only): ``"auto"``, ``"bank"`` or ``"null"``. ``guidance`` applies to
    conditional sampling; it needs a trained or fitted null vector.
    ``cuda_graph`` (CUDA only; default: on unless ``FLOWFM_CUDA_GRAPH=0``) replays the whole N-step loop as one
    captured CUDA graph. On CUDA no step of this call waits for the GPU (z and x_ref are not checked for NaN there,
    see :func:`_finite_or_unchecked`)."""
    if not isinstance(steps, Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    methods = getattr(model, "sampling_methods", METHODS)
    if method not in methods:
        raise ValueError(f"method={method!r} is unknown for this model; expected one of {tuple(methods)}")
    if not isinstance(guidance, Real) or not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior={prior!r} is unknown; expected one of {PRIORS}")
    length = model.config.window if length is None else int(length)
    if length < 16:
        raise ValueError(f"length must be >= 16 samples, got {length}")
    backend = model.backend if backend is None else backend
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), nvtx_range("flowfm/sample"):
            cond, conditional = _validated_condition(model, z, x_ref, n, prior, generator)
            if conditional and guidance != 1.0 and null_fit_needed(model):
                raise ValueError("this model was trained without condition dropout (p_uncond = 0) and its null "
                                 "vector was never fitted, so guidance != 1 has no null branch: fit one with "
                                 "flowfm.training.null_fit.fit_null_vector (`flowfm pretrain` does unless "
                                 "--null-fit-steps 0) or pretrain with --p-uncond > 0")
            b, device = cond.shape[0], cond.device
            x0 = torch.randn((b, model.config.in_channels, length), generator=generator,
                             device=generator.device if generator is not None else device)
            x0 = x0.to(device, state_dtype(cond.dtype))
            w = guidance if conditional else 1.0
            x1 = generate(model, x0, cond, steps, method, w, backend, cuda_graph, generator)
            return model.normalizer.denormalize(x1)
    finally:
        model.train(was_training)


def generate(model, x0: torch.Tensor, cond: torch.Tensor, steps: int, method: str, guidance: float,
             backend: Optional[str], cuda_graph: Optional[bool] = None,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Noise x0 (B, C, L) -> normalised samples (B, C, L) given conditions ``cond`` (B, D) (the null vector for
    unconditional sampling); ``guidance`` != 1 evaluates v_z and v_null in one doubled batch. Models with their own
    sampler (e.g. the diffusion baseline) provide ``model.generate(x0, cond, steps, method, guidance, backend,
    generator=)`` (``generator`` feeds stochastic samplers such as DDPM)."""
    own = getattr(model, "generate", None)
    if own is not None:
        return own(x0, cond, steps, method, guidance, backend, generator=generator)
    # CUDA graph path (flowfm_kernels.graphs): on CUDA the whole loop below is captured once per key and replayed;
    # ``cuda_graph`` None = auto (CUDA tensors, eval model, no autograd, $FLOWFM_CUDA_GRAPH != 0), False = eager,
    # True = required (ValueError on CPU).
    guided = guidance != 1.0
    net_dtype = cond.dtype  # the model's dtype (fast_sample casts z to it); the ODE state stays in x0's dtype
    grid_dtype = state_dtype(x0.dtype)

    def run(x0: torch.Tensor, cond: torch.Tensor, grid: Optional[torch.Tensor] = None) -> torch.Tensor:
        b = cond.shape[0]
        null = model.null_condition(b)

        def field(x, t):
            x = x.to(net_dtype)
            if not guided:
                return model.velocity(x, t, cond), None
            v = model.velocity(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
            return v[:b], v[b:]

        return integrate(field, x0, steps, method, guidance, grid=grid, backend=backend)

    mode = graphs.policy(cuda_graph, model, x0, cond)
    if mode == graphs.EAGER:
        return run(x0, cond)
    key = ("flowfm.generate", int(steps), method, float(guidance), requested_backend(backend),
           requested_backend(getattr(model, "backend", None)))
    return graphs.graphed_call(model, run, (x0, cond), key,
                               constants=lambda: (time_grid(steps, x0.device, grid_dtype),),
                               strict=mode == graphs.REQUIRED)
