"""FlowFM's kernels: each op has an eager PyTorch reference beside its Triton and CUDA implementations, chosen by
:mod:`flowfm_kernels.dispatch` (``backend=`` argument or ``FLOWFM_BACKEND``)."""
from flowfm_kernels.dispatch import BackendUnavailableError, available_backends, requested_backend, resolve
from flowfm_kernels.gn_film_silu import gn_film_silu, gn_film_silu_ref
from flowfm_kernels.conv_block import conv_block, conv_block_ref
from flowfm_kernels.fm_loss import flow_matching_loss, flow_matching_loss_ref, interpolate, interpolate_ref
from flowfm_kernels.ode_steps import (euler_step, euler_step_ref, guidance_combine, guidance_combine_ref,
                                      heun_correct, heun_correct_ref, rk4_combine, rk4_combine_ref)

__all__ = [
    "BackendUnavailableError", "available_backends", "requested_backend", "resolve",
    "gn_film_silu", "gn_film_silu_ref", "conv_block", "conv_block_ref",
    "flow_matching_loss", "flow_matching_loss_ref", "interpolate", "interpolate_ref",
    "euler_step", "euler_step_ref", "heun_correct", "heun_correct_ref", "rk4_combine", "rk4_combine_ref",
    "guidance_combine", "guidance_combine_ref",
]
