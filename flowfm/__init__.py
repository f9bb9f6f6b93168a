"""FlowFM: flow-matching foundation models for wearable motion sensors.

    cfg = flowfm.FlowFMConfig(preset="small")
    model = flowfm.FlowFM(cfg)
    loss = model.loss(x)                                  # x (B, C, L) float32 in g
    z = model.embed(x)                                    # (B, D): eval mode, no grad, batch-independent
    x_new = flowfm.fast_sample(model, z=z, steps=10, method="heun")
"""
from flowfm import data
from flowfm.config import FlowFMConfig
from flowfm.model import FlowFM
from flowfm.sampling import fast_sample

__version__ = "0.1.0"
__all__ = ["FlowFMConfig", "FlowFM", "fast_sample", "data", "pretrained", "import_ssl_wearables", "__version__"]


def pretrained(name=None, map_location="cpu"):
    """A model shipped with the package, loaded in eval mode (``pretrained("small-hapt")``); without a name, the
    list of shipped names. What each was trained on: its MODEL_CARD.md in ``flowfm/zoo/`` (:mod:`flowfm.zoo`)."""
    from flowfm import zoo
    from flowfm.checkpoint import load_model

    if name is None:
        return zoo.names()
    return load_model(zoo.model_folder(name), map_location=map_location)


def import_ssl_wearables(source, config=None, backend=None):
    """A FlowFM model whose encoder holds SSL-Wearables' published harnet10 weights (:mod:`flowfm.interop.
    ssl_wearables`; read with ``torch.load(weights_only=True)``)."""
    from flowfm.interop.ssl_wearables import import_ssl_wearables as _import

    return _import(source, config=config, backend=backend)
