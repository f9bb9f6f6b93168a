"""import_ssl_wearables: SSL-Wearables' harnet10 state dict (their module names, written here from their
accNet.py description: feature_extractor.layerN = Sequential(conv, ResBlock(bn1, conv1, bn2, conv2)..., BN, ReLU,
Downsample)) lands in FlowFM's encoder so that both networks compute the same features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import flowfm
from flowfm.interop.ssl_wearables import ssl_wearables_key_map

STAGES = [(64, 2, 2, 2), (128, 2, 2, 2), (256, 2, 5, 1), (512, 2, 5, 1), (1024, 0, 3, 1)]


class TheirResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm1d(c), nn.BatchNorm1d(c)
        self.conv1 = nn.Conv1d(c, c, 5, 1, 2, bias=False, padding_mode="circular")
        self.conv2 = nn.Conv1d(c, c, 5, 1, 2, bias=False, padding_mode="circular")

    def forward(self, x):
        h = self.conv1(torch.relu(self.bn1(x)))
        return x + self.conv2(torch.relu(self.bn2(h)))


class TheirDownsample(nn.Module):
    def __init__(self, c, factor, order):
        super().__init__()
        k = np.ones(factor)
        for _ in range(order):
            k = np.convolve(k, np.ones(factor))
        self.stride, self.padding = factor, order * (factor - 1) // 2
        self.register_buffer("kernel", torch.tensor(k / k.sum(), dtype=torch.float32)[None, None].repeat(c, 1, 1))

    def forward(self, x):
        return nn.functional.conv1d(x, self.kernel, stride=self.stride, padding=self.padding, groups=x.shape[1])


class TheirResnet(nn.Module):
    """SSL-Wearables' Resnet (resnet_version=1, epoch_len=10, is_mtl=True) with its four heads."""

    def __init__(self):
        super().__init__()
        self.feature_extractor = nn.Sequential()
        c_in = 3
        for i, (c, m, f, o) in enumerate(STAGES):
            mods = [nn.Conv1d(c_in, c, 5, 1, 2, bias=False, padding_mode="circular")]
            mods += [TheirResBlock(c) for _ in range(m)]
            mods += [nn.BatchNorm1d(c), nn.ReLU(True), TheirDownsample(c, f, o)]
            self.feature_extractor.add_module(f"layer{i + 1}", nn.Sequential(*mods))
            c_in = c
        for head in ("aot_h", "scale_h", "permute_h", "time_w_h"):
            setattr(self, head, nn.Sequential())
            getattr(self, head).add_module("linear1", nn.Linear(1024, 2))

    def forward(self, x):
        return self.feature_extractor(x).view(x.shape[0], -1)


@pytest.fixture(scope="module")
def theirs():
    torch.manual_seed(0)
    net = TheirResnet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong mapping shows in the outputs
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_key_map_covers_their_encoder_exactly(theirs):
    keys = {k for k in theirs.state_dict() if k.startswith("feature_extractor.")}
    assert set(ssl_wearables_key_map()) == keys


def test_imported_encoder_computes_their_features(theirs, tmp_path):
    path = tmp_path / "harnet10.mdl"
    torch.save({"module." + k: v for k, v in theirs.state_dict().items()}, path)  # DataParallel prefix
    model = flowfm.import_ssl_wearables(path)
    x = torch.randn(3, 3, 300) * 0.3 + torch.tensor([0.0, 0.0, 1.0])[:, None]
    with torch.no_grad():
        want = theirs(x)
    got = model.embed(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_clear_errors(theirs, tmp_path):
    state = theirs.state_dict()
    broken = {k: v for k, v in state.items() if "layer3.1.conv1" not in k}
    with pytest.raises(ValueError, match=r"missing \['feature_extractor.layer3.1.conv1.weight'\]"):
        flowfm.import_ssl_wearables(broken)
    wrong = dict(state, **{"feature_extractor.layer1.0.weight": torch.zeros(64, 6, 5)})
    with pytest.raises(ValueError, match="shape mismatch"):
        flowfm.import_ssl_wearables(wrong)
    with pytest.raises(ValueError, match="full-width"):
        flowfm.import_ssl_wearables(state, config=flowfm.FlowFMConfig(preset="small"))
    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="tensor-only"):
        flowfm.import_ssl_wearables(tmp_path / "junk.pt")


def test_pretrain_init_encoder_flag_refuses_a_small_preset(theirs, tmp_path, capsys):
    from flowfm.cli import main

    torch.save(theirs.state_dict(), tmp_path / "w.pt")
    x = np.random.default_rng(0).normal(0, 0.1, (16, 300, 3)).astype(np.float32) + [0, 0, 1]
    flowfm.data.save_folder(flowfm.data.WindowDataset(x=x.transpose(0, 2, 1).astype(np.float32),
                                                      pid=np.arange(16) % 2), tmp_path / "ds")
    rc = main(["pretrain", "--data", str(tmp_path / "ds"), "--preset", "tiny", "--epochs", "1", "--out",
               str(tmp_path / "run"), "--init-encoder", str(tmp_path / "w.pt"), "--no-progress", "--batch-size", "4"])
    assert rc == 2 and "full-width" in capsys.readouterr().err
