"""The main job's knobs over the quickstart recipe (quickstart.yaml), whose values are their defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from gptlab import settings
from gptlab.recipes import find
from gptlab.settings import AT_LEAST_1, NOT_NEGATIVE, POSITIVE

RECIPE = "quickstart"
_RECIPE = settings.read_yaml(find(RECIPE))


@dataclass
class QuickstartConfig:
    minutes: Annotated[float, POSITIVE] = _RECIPE["max_minutes"]
    """Training time budget."""
    out: str = _RECIPE["out"]
    """Run directory."""
    model: str = _RECIPE["model"]
    """Model preset."""
    vocab_size: Annotated[int, AT_LEAST_1] = int(_RECIPE["tokenizer"].removeprefix("bpe:"))
    """BPE vocabulary."""
    seq_len: Annotated[int, AT_LEAST_1] = _RECIPE["seq_len"]
    """Training window in tokens."""
    batch_size: Annotated[int, AT_LEAST_1] = _RECIPE["batch_size"]
    """Sequences per step."""
    lr: Annotated[float, POSITIVE] = _RECIPE["lr"]
    """Peak learning rate."""
    seed: Annotated[int, NOT_NEGATIVE] = _RECIPE["seed"]
    resume: bool = False
    """Continue an interrupted quickstart in `out`."""
    progress: bool = True
    """Progress bars; off hides the bars only, not the run's report."""
    threads: Annotated[int, AT_LEAST_1] | None = None
    """CPU threads to compute with; default: PyTorch's count, less the cores other programs keep busy, followed as
    the load changes."""

    def __post_init__(self) -> None:
        settings.check(self)

    def train_settings(self) -> dict[str, Any]:
        """These knobs as settings of the quickstart recipe (the training files aside)."""
        knobs = {k: v for k, v in vars(self).items() if k not in ("minutes", "vocab_size")}
        return knobs | {"max_minutes": self.minutes, "tokenizer": f"bpe:{self.vocab_size}"}
