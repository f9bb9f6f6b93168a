"""Pretraining: optimiser schedule, weight EMA and the resumable, checkpointing training loop."""
from flowfm.training.trainer import TrainConfig, TrainingDivergedError, pretrain

__all__ = ["TrainConfig", "TrainingDivergedError", "pretrain"]
