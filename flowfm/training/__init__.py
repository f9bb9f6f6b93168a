"""Pretraining: optimiser schedule, weight EMA, the resumable, checkpointing training loop, and what it stores
after the last epoch (the representation bank, the fitted null vector)."""
from flowfm.training.trainer import TrainConfig, TrainingDivergedError, pretrain

__all__ = ["TrainConfig", "TrainingDivergedError", "pretrain"]
