"""gptlab: GPT-1/2/3 from paper to practice.

    import gptlab
    lm = gptlab.load("runs/quick/final")
    print(lm.generate("def fibonacci(", max_new_tokens=64, temperature=0))
"""

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
}

__all__ = ["GptlabError", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
