"""Training under Accelerate: config, networks, objective, loop, checkpoints, samples."""

from .config import ModelConfig, TrainConfig, load_config
from .loop import Trainer

__all__ = ["ModelConfig", "TrainConfig", "Trainer", "load_config"]
