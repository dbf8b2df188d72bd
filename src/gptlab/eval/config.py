"""What one evaluation is asked to do: the settings of `gptlab eval` and `gptlab.evaluate`, defined once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError


@dataclass
class EvalConfig:
    checkpoint: Path | None = None
    """gptlab checkpoint directory"""
    tasks: list[str] = field(default_factory=list)
    """task YAML files or built-in task names"""
    shots: list[int] = field(default_factory=lambda: [0])
    """numbers of in-context examples, e.g. --shots 0 1 5 (default 0)"""
    texts: list[Path] = field(default_factory=list)
    """report perplexity and bits per byte of a text file (repeatable)"""
    limit: int | None = None
    """evaluate only the first N documents of each task"""
    batch_size: int = 16
    """requests scored per forward pass (default 16)"""
    out: Path | None = None
    """output directory, which must hold no earlier evaluation (default runs/eval/<checkpoint name>)"""
    log_samples: bool = False
    """also write each task document's requests, the model's answers and their scores to
    OUT/samples_<task>_<K>shot.jsonl, in lm-evaluation-harness's --log_samples fields"""
    device: str = "auto"
    """torch device: auto (GPU if present), cpu, cuda, ..."""
    threads: int | None = None
    """CPU threads to compute with (default: PyTorch's count, less the cores other programs keep busy,
    followed as the load changes)"""

    def check(self) -> None:
        """What can be refused before any file is read."""
        if not self.tasks and not self.texts:
            raise GptlabError("nothing to evaluate: pass a task (a task YAML or a built-in name) or a text file")
        if any(k < 0 for k in self.shots):
            raise GptlabError(f"shots must be non-negative, got {list(self.shots)}")
        if not self.shots:
            raise GptlabError("shots must name at least one number of examples")
        if self.limit is not None and self.limit < 1:
            raise GptlabError(f"limit must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise GptlabError(f"batch size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise GptlabError(f"threads must be at least 1, got {self.threads}")
