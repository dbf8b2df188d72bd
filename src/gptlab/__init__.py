"""gptlab: GPT-1/2/3 from paper to practice.

    import gptlab
    lm = gptlab.load("runs/quick/final")
    print(lm.generate("def fibonacci(", max_new_tokens=64, temperature=0))
"""

import importlib

from gptlab.errors import GptlabError

__version__ = "0.1.0"

# Imported on first use, so that tools needing only part of gptlab (the data pipeline's worker
# processes, `gptlab --help`) do not pay for importing PyTorch.
_EXPORTS = {
    "GPT": "gptlab.model", "GPTConfig": "gptlab.model", "preset": "gptlab.model",
    "LanguageModel": "gptlab.checkpoint", "load": "gptlab.checkpoint", "save": "gptlab.checkpoint",
    "SamplingParams": "gptlab.generation", "generate": "gptlab.generation", "stream": "gptlab.generation",
    "Tokenizer": "gptlab.tokenizer", "train_tokenizer": "gptlab.tokenizer",
}

__all__ = ["GptlabError", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gptlab' has no attribute {name!r}")
