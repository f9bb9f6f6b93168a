"""Checkpoint folders: exact round trip, tamper/missing detection, no pickle, atomic writes."""
import json

import pytest
import torch

import flowfm
from flowfm.checkpoint import CheckpointError, read_state, write_state
from flowfm.config import FlowFMConfig
from flowfm.data.window_spec import WindowSpec


def _trained_like_model():
    torch.manual_seed(0)
    m = flowfm.FlowFM(FlowFMConfig(preset="tiny", window=48, sigma_min=0.01, encoder_view="identical"))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
        m.normalizer.mean.copy_(torch.tensor([0.1, 0.2, 0.9]))
        m.normalizer.std.copy_(torch.tensor([0.3, 0.4, 0.5]))
        m.encoder.features[1].body[0].running_mean.uniform_()  # a BatchNorm buffer
    return m


def test_round_trip_is_bit_identical(tmp_path):
    m = _trained_like_model()
    m.save(tmp_path / "ckpt", metadata={"note": "test"})
    m2 = flowfm.FlowFM.load(tmp_path / "ckpt")
    assert m2.config == m.config
    assert m2.checkpoint_metadata == {"note": "test"}
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert m.training and not m2.training  # a loaded model is in eval mode
    x = torch.randn(2, 3, 48)
    m.eval()
    assert torch.equal(m.encode(x), m2.encode(x))
    a = flowfm.fast_sample(m, x_ref=x, steps=2, generator=torch.Generator().manual_seed(0))
    b = flowfm.fast_sample(m2, x_ref=x, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_tampered_missing_and_foreign_files_fail_clearly(tmp_path):
    m = _trained_like_model()
    m.save(tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        flowfm.FlowFM.load(tmp_path / "c")

    m.save(tmp_path / "d")
    (tmp_path / "d" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        flowfm.FlowFM.load(tmp_path / "d")

    with pytest.raises(CheckpointError, match="does not exist"):
        flowfm.FlowFM.load(tmp_path / "nowhere")

    m.save(tmp_path / "e")
    doc = json.loads((tmp_path / "e" / "config.json").read_text())
    doc["format"] = "pickle"
    (tmp_path / "e" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="not a flowfm-checkpoint"):
        flowfm.FlowFM.load(tmp_path / "e")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    m = _trained_like_model()
    m.save(tmp_path / "c", metadata={"v": 1})
    import flowfm.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save(tmp_path / "c", metadata={"v": 2})
    assert flowfm.FlowFM.load(tmp_path / "c").checkpoint_metadata == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp folder left behind


def test_nested_state_round_trip(tmp_path):
    state = {"a": torch.arange(5), "b": [1, 2.5, "x", None, (3, torch.ones(2))], 3: {"c": True}}
    write_state(tmp_path, "s", state)
    back = read_state(tmp_path, "s")
    assert torch.equal(back["a"], state["a"]) and back["b"][:4] == [1, 2.5, "x", None]
    assert back["b"][4][0] == 3 and torch.equal(back["b"][4][1], torch.ones(2)) and back[3] == {"c": True}
    with pytest.raises(TypeError, match="cannot store"):
        write_state(tmp_path, "t", {"f": object()})


def test_window_spec_round_trip_and_legacy_default(tmp_path):
    m = _trained_like_model()
    assert m.data_spec == WindowSpec(30.0, 48, 24, "g", ("x", "y", "z"))  # the convention for the config
    m.data_spec = WindowSpec(50.0, 48, 12, "g", ("y", "x", "z"))
    m.save(tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "config.json").read_text())
    assert doc["data"] == {"sample_rate_hz": 50.0, "window_length": 48, "hop": 12, "unit": "g",
                           "channels": ["y", "x", "z"]}
    assert flowfm.FlowFM.load(tmp_path / "c").data_spec == m.data_spec

    del doc["data"]  # a checkpoint written before the spec (and the config checksum) existed: the convention
    doc.pop("config_sha256")
    (tmp_path / "c" / "config.json").write_text(json.dumps(doc))
    assert flowfm.FlowFM.load(tmp_path / "c").data_spec == WindowSpec(30.0, 48, 24, "g", ("x", "y", "z"))
    doc["data"] = {"sample_rate_hz": 100.0}  # partial: the rest from the convention
    (tmp_path / "c" / "config.json").write_text(json.dumps(doc))
    assert flowfm.FlowFM.load(tmp_path / "c").data_spec == WindowSpec(100.0, 48, 24, "g", ("x", "y", "z"))
    doc["data"] = {"sample_rate_hz": -1}
    (tmp_path / "c" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="'data' entry of config.json is invalid: sample_rate_hz must be"):
        flowfm.FlowFM.load(tmp_path / "c")
    with pytest.raises(ValueError, match="names 2 channels"):
        m.data_spec = WindowSpec(30.0, 48, 24, "g", ("x", "y"))
