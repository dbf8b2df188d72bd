"""In-context evaluation (GPT-2/3): zero-, one- and few-shot tasks, perplexity, lm-evaluation-harness."""

from gptlab.lazy import lazy_exports

# Imported on first use: `gptlab eval --help` and task-file checks must not import PyTorch.
_EXPORTS = {
    "evaluate": "evaluation", "EvalResults": "evaluation", "EvalConfig": "config", "load_tasks": "tasks",
    "loglikelihood": "scoring", "loglikelihood_rolling": "scoring",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
