"""GPT-1 supervised fine-tuning: input transformations, the task head, its objective and predictions."""

from gptlab.lazy import lazy_exports

# Imported on first use: reading task files needs no PyTorch, `gptlab --help` none of this. TaskSpec,
# TASK_TYPES and TaskModel live beside the model (gptlab.model.task, gptlab.model.heads), which checkpoints
# read without fine-tuning; they are offered here through the modules that use them.
_EXPORTS = {
    "TASK_TYPES": "tasks", "TaskData": "tasks", "TaskSpec": "tasks", "encode": "tasks", "label_set": "tasks",
    "read_rows": "tasks", "split_holdout": "tasks",
    "TaskModel": "heads", "add_special_tokens": "heads", "freeze_backbone": "heads",
    "TaskObjective": "objective",
    "predict": "predict",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
