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
__all__ = ["FlowFMConfig", "FlowFM", "fast_sample", "data", "__version__"]
