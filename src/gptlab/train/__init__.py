"""Pretraining: the GPT-3 recipe, exact resume, torchrun scale-out."""

from gptlab.lazy import lazy_exports

# Imported on first use: `gptlab train --help` reads gptlab.train.config, not the PyTorch trainer.
_EXPORTS = {"TrainConfig": "config", "build_config": "config", "TrainResult": "trainer", "train": "trainer"}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
