"""In-context evaluation (GPT-2/3): zero-, one- and few-shot tasks, perplexity, lm-evaluation-harness."""

from gptlab.lazy import lazy_exports

# Imported on first use: `gptlab eval --help` and task-file checks must not import PyTorch.
_EXPORTS = {
    "load_task": "tasks", "Task": "tasks",
    "loglikelihood": "scoring", "loglikelihood_rolling": "scoring",
    "evaluate": "runner",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
