"""save_pretrained / from_pretrained (the huggingface_hub ModelHubMixin interface) on local folders: the same
config.json + model.safetensors folder as save / load, checksum checked; no network."""
import json

import pytest
import torch

from flowfm.checkpoint import CheckpointError
from flowfm.config import FlowFMConfig
from flowfm.model import FlowFM


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FlowFM(FlowFMConfig(preset="tiny", window=64)).eval()


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_save_pretrained_loads_with_load_and_vice_versa(model, tmp_path):
    model.save_pretrained(tmp_path / "hub")
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["config.json", "model.safetensors"]
    loaded = FlowFM.load(tmp_path / "hub")
    _same(model, loaded)
    model.save(tmp_path / "plain")
    again = FlowFM.from_pretrained(str(tmp_path / "plain"))
    _same(model, again)
    assert not again.training
    x = torch.randn(4, 3, 64) * 0.3 + torch.tensor([0.0, 0.0, 1.0])[:, None]
    torch.testing.assert_close(again.embed(x), model.embed(x), rtol=0, atol=0)


def test_from_pretrained_checks_the_checksum(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        FlowFM.from_pretrained(tmp_path / "m")


def test_config_json_is_the_checkpoint_format(model, tmp_path):
    model.save_pretrained(tmp_path / "m", metadata={"note": "x"})
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    assert doc["format"] == "flowfm-checkpoint" and doc["metadata"] == {"note": "x"}
    assert doc["config"]["preset"] == "tiny"


def test_push_needs_a_repo_id(model, tmp_path):
    with pytest.raises(ValueError, match="repo_id"):
        model.save_pretrained(tmp_path / "m", push_to_hub=True)
