"""How a checkpoint is loaded to run: the device, precision and thread settings that generate, serve, eval and
predict share, defined once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from gptlab import settings
from gptlab.settings import AT_LEAST_1

if TYPE_CHECKING:
    from gptlab.language_model import LanguageModel


@dataclass
class LoadConfig:
    precision: Literal["fp32", "bf16", "int8"] = "fp32"  # gptlab.model.quantize.Precision, free of PyTorch here
    """Weights at load: fp32, bf16, or int8 with per-channel scales (faster on CPU, slightly less exact)."""
    device: str = "auto"
    """Torch device: auto (GPU if present), cpu, cuda, ..."""
    threads: Annotated[int, AT_LEAST_1] | None = None
    """CPU threads to compute with; default: PyTorch's count, less the cores other programs keep busy, followed as
    the load changes."""

    def __post_init__(self) -> None:
        settings.check(self)  # values given in Python; those from YAML or the command line were checked as read

    def load(self, checkpoint: str | os.PathLike) -> LanguageModel:
        """The checkpoint, loaded with these settings (the thread count applies to the whole process)."""
        from gptlab.language_model import load
        from gptlab.threads import use_threads

        use_threads(self.threads)
        return load(checkpoint, device=self.device, precision=self.precision)
