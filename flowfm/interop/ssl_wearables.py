"""SSL-Wearables' published ResNet-V2 encoder ("harnet10") as FlowFM's encoder.

SSL-Wearables (OxWearables/ssl-wearables, ``sslearning/models/accNet.py``, class ``Resnet`` with
``resnet_version=1, epoch_len=10``) builds ``feature_extractor.layer{1..5}``, each an ``nn.Sequential``:

    index 0          Conv1d(k=5, circular, no bias)                  key  .0.weight
    index 1..m       ResBlock: bn1 -> ReLU -> conv1 -> bn2 -> ReLU -> conv2, identity skip
                                                                      keys .j.bn1.*, .j.conv1.weight, .j.bn2.*, .j.conv2.weight
    index m+1        BatchNorm1d                                      keys .(m+1).*
    index m+2, m+3   ReLU, Downsample (a fixed blur kernel buffer)    key  .(m+3).kernel

with (channels, m, factor, order) = (64,2,2,2) (128,2,2,2) (256,2,5,1) (512,2,5,1) (1024,0,3,1): exactly the stages
of :data:`flowfm.encoder.HARNET10_STAGES`, whose :class:`~flowfm.encoder.ResNetEncoder` lays the same modules out
flat in ``features`` (a ResBlock's bn1 / conv1 / bn2 / conv2 are ``body.0`` / ``body.2`` / ``body.3`` /
``body.5``). Their classifier heads (``classifier.*``, ``aot_h.*``, ``scale_h.*``, ``permute_h.*``,
``time_w_h.*``) are not part of the encoder and are skipped; a ``module.`` prefix (DataParallel) is stripped.
Their output flattens the final (1024, 1) map, which equals our global average pool at length 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from flowfm.encoder import HARNET10_STAGES

__all__ = ["ssl_wearables_key_map", "load_ssl_wearables_encoder", "import_ssl_wearables"]

HEAD_PREFIXES = ("classifier.", "aot_h.", "scale_h.", "permute_h.", "time_w_h.", "rotation_classifier.")
_RES_PARTS = {"bn1": "body.0", "conv1": "body.2", "bn2": "body.3", "conv2": "body.5"}


def ssl_wearables_key_map(stages=HARNET10_STAGES) -> dict[str, str]:
    """{their state-dict key: our ``ResNetEncoder`` key} for every parameter and buffer."""
    mapping, offset = {}, 0
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for s, (_, blocks, _, _) in enumerate(stages):
        theirs = f"feature_extractor.layer{s + 1}"
        mapping[f"{theirs}.0.weight"] = f"features.{offset}.weight"
        for j in range(1, blocks + 1):
            for part, ours in _RES_PARTS.items():
                for leaf in (("weight",) if part.startswith("conv") else bn):
                    mapping[f"{theirs}.{j}.{part}.{leaf}"] = f"features.{offset + j}.{ours}.{leaf}"
        for leaf in bn:
            mapping[f"{theirs}.{blocks + 1}.{leaf}"] = f"features.{offset + blocks + 1}.{leaf}"
        mapping[f"{theirs}.{blocks + 3}.kernel"] = f"features.{offset + blocks + 3}.kernel"
        offset += blocks + 4
    return mapping


def _read(source: Union[str, Path, Mapping[str, torch.Tensor]]) -> dict:
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (expected SSL-Wearables weights, e.g. a .mdl / .pt file)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: nothing is unpickled
        except Exception as exc:  # noqa: BLE001 - torch raises several types for foreign files
            raise ValueError(f"{path}: not a tensor-only PyTorch state dict ({type(exc).__name__}: {exc})") from None
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
                state = dict(state[key])
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(state).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_ssl_wearables_encoder(encoder: torch.nn.Module, source) -> dict:
    """Copy SSL-Wearables harnet10 weights (a path or a state dict) into a full-width ``ResNetEncoder`` in place.

    Returns ``{"loaded": n, "skipped_heads": [...]}``. Raises ValueError listing missing, unexpected and
    shape-mismatched keys (nothing is copied then), or when the encoder is not the full-width harnet10."""
    state = _read(source)
    mapping = ssl_wearables_key_map()
    ours = encoder.state_dict()
    if set(mapping.values()) != set(ours) or getattr(encoder, "out_dim", None) != 1024:
        raise ValueError("SSL-Wearables' harnet10 has the full-width encoder (encoder_width 1.0, preset "
                         "'harnet10'); this encoder has another layout")
    heads = sorted(k for k in state if k.startswith(HEAD_PREFIXES))
    body = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    missing = sorted(k for k in mapping if k not in body and not k.endswith((".kernel", "num_batches_tracked")))
    unexpected = sorted(k for k in body if k not in mapping)
    mismatched = sorted(f"{k} {tuple(body[k].shape)} vs {tuple(ours[mapping[k]].shape)}" for k in mapping
                        if k in body and tuple(body[k].shape) != tuple(ours[mapping[k]].shape))
    if missing or unexpected or mismatched:
        raise ValueError("these weights do not fit SSL-Wearables' harnet10 layout: "
                         + "; ".join(f"{name} {items[:4]}{' ...' if len(items) > 4 else ''} ({len(items)})"
                                     for name, items in (("missing", missing), ("unexpected", unexpected),
                                                         ("shape mismatch", mismatched)) if items))
    new = dict(ours)
    for theirs, key in mapping.items():
        if theirs in body:
            if key.endswith(".kernel") and not torch.allclose(body[theirs].float(), ours[key].float(), atol=1e-6):
                raise ValueError(f"{theirs}: the stored blur kernel differs from harnet10's fixed filter")
            new[key] = body[theirs].to(ours[key].dtype)
    encoder.load_state_dict(new)
    return {"loaded": sum(1 for k in mapping if k in body), "skipped_heads": heads}


def import_ssl_wearables(source, config: Optional[object] = None, backend: Optional[str] = None):
    """A FlowFM model (preset ``harnet10`` unless ``config`` says otherwise) whose encoder holds SSL-Wearables'
    weights: evaluate it (``model.embed``) or continue with FlowFM pretraining (``flowfm pretrain
    --init-encoder PATH``). ``source`` is a weights file (read with ``torch.load(weights_only=True)``) or a state
    dict; the generator starts at its random init."""
    from flowfm.config import FlowFMConfig
    from flowfm.model import FlowFM

    model = FlowFM(config or FlowFMConfig(preset="harnet10"), backend=backend)
    load_ssl_wearables_encoder(model.encoder, source)
    return model.eval()
