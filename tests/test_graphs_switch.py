"""The CUDA-graph switch (flowfm_kernels.graphs, docs/design.md §6 item 4) on CPU: the cuda_graph argument,
$FLOWFM_CUDA_GRAPH and $FLOWFM_CUDA_GRAPH_CACHE rules, the policy, and the model's address fingerprint.
"""
import warnings

import pytest
import torch
from torch import nn

import flowfm
from flowfm_kernels import graphs
from tests.cuda_graph_fakes import gen
from tests.cuda_graph_fakes import fake, model, fresh_cache  # noqa: F401 (pytest fixtures)


def test_explicit_true_on_cpu_raises_and_auto_is_silent(model, monkeypatch):
    monkeypatch.delenv("FLOWFM_CUDA_GRAPH", raising=False)
    z = torch.randn(2, model.z_dim)
    with pytest.raises(ValueError, match="cuda_graph=True needs .*CUDA"):
        flowfm.fast_sample(model, z=z, steps=2, cuda_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = flowfm.fast_sample(model, z=z, steps=2, generator=gen(0))
        b = flowfm.fast_sample(model, z=z, steps=2, generator=gen(0), cuda_graph=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert graphs.stats()["captures"] == 0 and graphs.stats()["entries"] == 0


@pytest.mark.parametrize("value, expected", [(None, True), ("", True), ("auto", True), ("1", True), (" ON ", True),
                                             ("true", True), ("0", False), ("off", False), ("False", False)])
def test_env_switch_parsing(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FLOWFM_CUDA_GRAPH", raising=False)
    else:
        monkeypatch.setenv("FLOWFM_CUDA_GRAPH", value)
    assert graphs.env_setting() is expected


def test_env_switch_invalid_is_a_clear_error(model, monkeypatch):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH", "sometimes")
    with pytest.raises(ValueError, match="FLOWFM_CUDA_GRAPH='sometimes'"):
        graphs.env_setting()
    with pytest.raises(ValueError, match="FLOWFM_CUDA_GRAPH"):  # reported on CPU too (auto reads the variable)
        flowfm.fast_sample(model, n=2, steps=1)
    flowfm.fast_sample(model, n=2, steps=1, cuda_graph=False)  # an explicit argument does not read it


@pytest.mark.parametrize("value, expected", [(None, 8), ("", 8), ("3", 3), (" 1 ", 1)])
def test_cache_size_parsing(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FLOWFM_CUDA_GRAPH_CACHE", raising=False)
    else:
        monkeypatch.setenv("FLOWFM_CUDA_GRAPH_CACHE", value)
    assert graphs.cache_size() == expected


@pytest.mark.parametrize("value", ["0", "-2", "eight", "2.5"])
def test_cache_size_invalid(monkeypatch, value):
    monkeypatch.setenv("FLOWFM_CUDA_GRAPH_CACHE", value)
    with pytest.raises(ValueError, match="FLOWFM_CUDA_GRAPH_CACHE"):
        graphs.cache_size()


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_cuda_graph_argument_type(model, bad):
    with pytest.raises(ValueError, match="cuda_graph must be None"):
        flowfm.fast_sample(model, n=1, steps=1, cuda_graph=bad)


def test_policy_rules(fake, model, monkeypatch):
    x = torch.randn(2, 3, 48)
    z = torch.randn(2, model.z_dim)
    assert graphs.policy(False, model, x, z) == graphs.EAGER
    assert graphs.policy(None, model, x, z) == graphs.EAGER  # autograd on: auto stays eager
    with torch.no_grad():
        assert graphs.policy(None, model, x, z) == graphs.AUTO
        assert graphs.policy(True, model, x, z) == graphs.REQUIRED
        monkeypatch.setenv("FLOWFM_CUDA_GRAPH", "0")
        assert graphs.policy(None, model, x, z) == graphs.EAGER
        assert graphs.policy(True, model, x, z) == graphs.REQUIRED  # the argument wins over the variable
        monkeypatch.delenv("FLOWFM_CUDA_GRAPH")
        model.train()
        try:
            assert graphs.policy(None, model, x, z) == graphs.EAGER
            with pytest.raises(ValueError, match="training mode"):
                graphs.policy(True, model, x, z)
        finally:
            model.eval()
        monkeypatch.setattr(fake, "is_capturing", lambda: True)
        assert graphs.policy(None, model, x, z) == graphs.EAGER
        with pytest.raises(ValueError, match="capture is already running"):
            graphs.policy(True, model, x, z)
    # mixed devices (a "meta" tensor stands in for a second device) never use graphs
    assert graphs.policy(None, model, x, z.to("meta")) == graphs.EAGER


# ---------------------------------------------------------------------------------------------- fingerprint (CPU)
def test_fingerprint_tracks_replacement_not_in_place_updates():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    fp = graphs.fingerprint(m)
    assert len(fp) == 2 + 2 + 3  # weight, bias; BN weight, bias; running_mean, running_var, num_batches_tracked
    with torch.no_grad():
        m[0].weight.mul_(2)
        m[1].running_mean.add_(1)
    m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()})
    assert graphs.fingerprint(m) == fp
    m[0].weight = nn.Parameter(torch.randn(4, 4))
    fp2 = graphs.fingerprint(m)
    assert fp2 != fp
    m[0].weight.data = torch.randn(4, 4)  # no registration hook fires: caught by the address
    fp3 = graphs.fingerprint(m)
    assert fp3 != fp2
    m.append(nn.Linear(4, 2))  # a new submodule
    fp4 = graphs.fingerprint(m)
    assert len(fp4) == len(fp3) + 2
    del m[0].bias  # removed without a hook: re-listed
    assert len(graphs.fingerprint(m)) == len(fp4) - 1
    m[2].bias = None
    assert graphs.fingerprint(m)[-1] == 0
    assert graphs.fingerprint(object()) == ()
