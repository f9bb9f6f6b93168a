"""Solver order on analytic ODEs, guidance fusion, and the time grid."""
import math

import pytest
import torch

from flowfm.solvers import METHODS, NFE_PER_STEP, integrate, nfe, time_grid

EXPECTED_ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def _linear_field(x, t):
    """dx/dt = -x + t  ->  x(1) = (x0 + 1) e^{-1} (time-dependent, so stage times matter)."""
    return -x + t[:, None, None], None


def _exact(x0):
    return (x0.double() + 1) * math.exp(-1.0)


@pytest.mark.parametrize("method", METHODS)
def test_global_error_order(method):
    x0 = torch.randn(3, 2, 5, dtype=torch.float64)
    errors = []
    # the kernels compute in float32: keep rk4's errors above that floor (~1e-7)
    for steps in ((2, 4, 8) if method == "rk4" else (4, 8, 16, 32)):
        x1 = integrate(lambda x, t: (-x + t.double()[:, None, None], None), x0, steps, method, backend="eager")
        errors.append(float((x1 - _exact(x0)).abs().max()))
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    order = EXPECTED_ORDER[method]
    assert all(abs(r - order) < 0.35 for r in rates), f"{method}: observed rates {rates}, expected {order}"


def test_integrate_does_not_modify_input_and_counts_nfe():
    calls = []

    def field(x, t):
        calls.append(1)
        return _linear_field(x, t)

    x0 = torch.randn(2, 3, 7)
    before = x0.clone()
    integrate(field, x0, 5, "heun")
    assert torch.equal(x0, before)
    assert len(calls) == nfe("heun", 5) == 10
    assert NFE_PER_STEP == {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("w", [1.0, 2.5])
def test_fused_guidance_equals_guided_field(method, w):
    torch.manual_seed(0)
    a = torch.randn(1, 3, 1)

    def two_branch(x, t):
        return -a.abs() * x + t[:, None, None], 0.3 * x - 1.0

    def guided(x, t):
        v, vn = two_branch(x, t)
        return vn + w * (v - vn), None

    x0 = torch.randn(4, 3, 9)
    fused = integrate(two_branch, x0, 6, method, guidance=w)
    plain = integrate(guided, x0, 6, method)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_time_grid():
    g = time_grid(4)
    assert g.shape == (5,) and g[0] == 0 and g[-1] == 1
    with pytest.raises(ValueError, match="unknown"):
        integrate(_linear_field, torch.zeros(1, 1, 4), 2, "rk45")
