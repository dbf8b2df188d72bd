"""What one evaluation is asked to do: the settings of `gptlab eval` and `gptlab.evaluate`, defined once
(gptlab.settings: the flags, their help and defaults come from here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from gptlab.errors import GptlabError
from gptlab.loading import LoadConfig
from gptlab.settings import AT_LEAST_1


@dataclass
class EvalConfig(LoadConfig):
    checkpoint: str | None = None
    """gptlab checkpoint directory"""
    tasks: list[str] = field(default_factory=list, metadata={"flag": "task", "metavar": "NAME_OR_YAML"})
    """task YAML files or built-in task names"""
    shots: list[int] = field(default_factory=lambda: [0], metadata={"metavar": "K"})
    """numbers of in-context examples, e.g. --shots 0 1 5 (default 0)"""
    texts: list[str] = field(default_factory=list, metadata={"flag": "text", "metavar": "FILE"})
    """report perplexity and bits per byte of a text file"""
    limit: Annotated[int, AT_LEAST_1] | None = None
    """evaluate only the first N documents of each task"""
    batch_size: Annotated[int, AT_LEAST_1] = 16
    """requests scored per forward pass"""
    out: str | None = None
    """output directory, which must hold no earlier evaluation (default runs/eval/<checkpoint name>)"""
    log_samples: bool = False
    """also write each task document's requests, the model's answers and their scores to
    OUT/samples_<task>_<K>shot.jsonl, in lm-evaluation-harness's --log_samples fields"""

    def check(self) -> None:
        """What can be refused before any file is read (the numbers were checked when the config was made)."""
        if not self.tasks and not self.texts:
            raise GptlabError("nothing to evaluate: pass a task (a task YAML or a built-in name) or a text file")
        if not self.shots or any(k < 0 for k in self.shots):
            raise GptlabError(f"shots must be non-negative numbers of examples, got {list(self.shots)}")
