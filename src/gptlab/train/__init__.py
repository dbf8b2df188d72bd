"""Pretraining: the GPT-3 recipe, exact resume, torchrun scale-out."""

from gptlab.train.config import TrainConfig, build_config
from gptlab.train.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "build_config", "train"]
