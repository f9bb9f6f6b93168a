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
    # a float64 state integrates in float64 (the kernels' float32 floor of ~1e-7 no longer applies): rk4 reaches
    # ~1e-9 at 32 steps and keeps its order
    for steps in (4, 8, 16, 32):
        x1 = integrate(lambda x, t: (-x + t[:, None, None], None), x0, steps, method, backend="eager")
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
    assert g.shape == (5,) and g[0] == 0 and g[-1] == 1 and g.dtype == torch.float32
    assert time_grid(3, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        time_grid(3, dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown"):
        integrate(_linear_field, torch.zeros(1, 1, 4), 2, "rk45")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype, t_dtype", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                            (torch.bfloat16, torch.float32)])
def test_state_and_times_keep_their_precision(method, dtype, t_dtype):
    seen = set()

    def field(x, t):
        seen.add(t.dtype)
        return -x + t.to(x.dtype)[:, None, None], None

    x0 = torch.randn(2, 3, 5).to(dtype)
    x1 = integrate(field, x0, 3, method, grid=torch.tensor([0.0, 0.25, 0.6, 1.0]))
    assert x1.dtype == dtype and seen == {t_dtype}


def test_float64_guided_updates_match_a_plain_float64_loop():
    """The float64 path's fused guidance and stage updates against RK4 written out by hand in float64."""
    torch.manual_seed(1)
    a = torch.randn(1, 3, 1, dtype=torch.float64)
    w = 1.7

    def two_branch(x, t):
        return torch.sin(a * x) + t[:, None, None] ** 2, 0.3 * x - t[:, None, None]

    def g(x, t):
        v, vn = two_branch(x, t)
        return vn + w * (v - vn)

    x = x0 = torch.randn(2, 3, 4, dtype=torch.float64)
    h = 1.0 / 5
    for n in range(5):
        t = torch.full((2,), n * h, dtype=torch.float64)
        k1 = g(x, t)
        k2 = g(x + h / 2 * k1, t + h / 2)
        k3 = g(x + h / 2 * k2, t + h / 2)
        k4 = g(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(integrate(two_branch, x0, 5, "rk4", guidance=w), x, rtol=0, atol=1e-13)
