"""What `gptlab model info NAME` reports: a preset's or a checkpoint's model, described without its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptlab.checkpoint.io import read_config
from gptlab.model.config import PRESETS, GPTConfig, preset
from gptlab.model.describe import describe


def model_config(name: str) -> GPTConfig:
    """The model config of a preset, or of the checkpoint directory `name`."""
    if name in PRESETS or not Path(name).exists():
        return preset(name)
    return GPTConfig.from_dict(read_config(name).get("model", {}))


def model_info(name: str) -> dict[str, Any]:
    """Shape and parameter count of a preset or checkpoint; a preset's also its description, batch and lr."""
    info = describe(model_config(name))
    if name in PRESETS:
        p = PRESETS[name]
        info.update(description=p.description, batch_tokens=p.batch_tokens, lr=p.lr)
    return info
