"""Which encoder to evaluate: a checkpoint folder of any method, or a random init of a preset's encoder."""
from __future__ import annotations

from typing import Callable, Union

import torch


def random_init_model(preset: str, in_channels: int, window: int, seed: int):
    """A FlowFM model of ``preset`` at PyTorch's default random init under torch seed ``seed`` (global RNG kept)."""
    from flowfm.config import FlowFMConfig
    from flowfm.model import FlowFM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FlowFM(FlowFMConfig(preset=preset, in_channels=in_channels, window=window))


def encoder_model(source: str, *, preset: str = "small", in_channels: int = 3, window: int = 300,
                  base_seed: int = 0) -> tuple[Union[object, Callable[[int], object]], str]:
    """(model or ``seed -> model`` factory, row name) for :func:`~flowfm.evaluation.protocol.evaluate_encoder`.

    source:
        a checkpoint folder (FlowFM, DiffusionFM or SSLWearables, via :func:`flowfm.checkpoint.load_model`);
        ``"random"``: the preset's encoder at a random init, frozen (use with mode linear / mlp), re-drawn for every
        evaluation seed s with torch seed ``base_seed * 100003 + s``, so its spread over seeds includes the init;
        ``"scratch"``: the preset's architecture for mode ``scratch`` (re-initialised per fold and draw there).
    """
    if source in ("random", "scratch"):
        if source == "scratch":
            return random_init_model(preset, in_channels, window, base_seed), f"scratch_{preset}"
        return (lambda s: random_init_model(preset, in_channels, window, base_seed * 100_003 + s)), \
            f"random_init_{preset}"
    from flowfm.checkpoint import CheckpointError, load_model
    from flowfm.zoo import resolve_checkpoint

    path = resolve_checkpoint(source)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder {path} does not exist (pass a model folder such as RUN/model, "
                                f"or --encoder random / scratch)")
    try:
        model = load_model(path)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None
    if not (hasattr(model, "encoder") and hasattr(model, "encode")):
        raise ValueError(f"{path} holds a {type(model).__name__} without an encoder to evaluate")
    if model.config.in_channels != in_channels:
        raise ValueError(f"{path} expects {model.config.in_channels} channels; the data has {in_channels}")
    return model, str(source)
