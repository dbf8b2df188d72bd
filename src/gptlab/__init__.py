"""gptlab: GPT-1/2/3 from paper to practice.

    import gptlab
    lm = gptlab.load("runs/quick/final")
    print(lm.generate("def fibonacci(", max_new_tokens=64, temperature=0))

Every verb has its Python call, returning what it made: `gptlab.train("shakespeare-char", max_steps=200)`,
`gptlab.finetune(checkpoint=..., train=...)`, `gptlab.quickstart(minutes=1)`, `gptlab.predict(checkpoint, rows)`,
`gptlab.serve(checkpoint, port=8000)`; their settings are the fields of TrainConfig, FinetuneConfig, ...
"""

import importlib
import types
from typing import Any

from gptlab.errors import GptlabError
from gptlab.lazy import lazy_exports

__version__ = "0.1.0"

# Imported on first use, so that tools needing only part of gptlab (the data pipeline's worker
# processes, `gptlab --help`) do not pay for importing PyTorch.
_EXPORTS = {
    "GPT": "model", "GPTConfig": "model", "preset": "model",
    "LanguageModel": "language_model", "load": "language_model", "save": "checkpoint",
    "SamplingParams": "generation", "generate": "language_model", "stream": "language_model",
    "Tokenizer": "tokenizer", "train_tokenizer": "tokenizer",
    "evaluate": "eval", "EvalConfig": "eval", "EvalResults": "eval",
    "quickstart": "api", "predict": "api", "Predictions": "api",
    "TrainConfig": "train.config", "TrainResult": "train.trainer", "FinetuneConfig": "finetune.config",
    "PredictConfig": "api", "QuickstartConfig": "recipes.quickstart", "ServeConfig": "serve.config",
    "LoadConfig": "loading",
    "run_pipeline": "data.curate.pipeline",
    "SweepConfig": "scale.sweep", "run_sweep": "scale.sweep", "scale_predict": "api", "scale_plan": "api",
    "write_example": "data.example", "model_info": "checkpoint.info", "convert": "checkpoint.convert",
}
_VERB_PACKAGES = ("train", "finetune", "serve")


class _Verb(types.ModuleType):
    """A package that is also its verb's Python call: `gptlab.train(...)` is `gptlab.api.train(...)`, while
    `gptlab.train.trainer` and the package's other modules stay where they are."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("gptlab.api"), self.__name__.rpartition(".")[2])(*args, **kwargs)


for _name in _VERB_PACKAGES:  # light: each package imports its modules on first use
    importlib.import_module(f"{__name__}.{_name}").__class__ = _Verb

__all__ = ["GptlabError", *_VERB_PACKAGES, *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
