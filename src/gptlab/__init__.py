"""gptlab: GPT-1/2/3 from paper to practice.

    import gptlab
    lm = gptlab.load("runs/quick/final")
    print(lm.generate("def fibonacci(", max_new_tokens=64, temperature=0))
"""

from gptlab.checkpoint import LanguageModel, load, save
from gptlab.errors import GptlabError
from gptlab.generation import SamplingParams, generate, stream
from gptlab.model import GPT, GPTConfig, preset
from gptlab.tokenizer import Tokenizer, train_tokenizer

__version__ = "0.1.0"

__all__ = [
    "GPT", "GPTConfig", "GptlabError", "LanguageModel", "SamplingParams", "Tokenizer",
    "generate", "load", "preset", "save", "stream", "train_tokenizer",
]
