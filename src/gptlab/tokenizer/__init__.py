"""Tokenizers: GPT-2 byte-level BPE (load GPT-2's files or train on a corpus, encode at tiktoken's
speed), plus byte- and char-level ones for small experiments."""

from gptlab.tokenizer.bpe import GPT1_SPECIAL_TOKENS, GPT2_PATTERN, Tokenizer
from gptlab.tokenizer.simple import CharTokenizer, byte_tokenizer, load_tokenizer
from gptlab.tokenizer.train import train_tokenizer, train_tokenizer_on_texts

__all__ = [
    "GPT1_SPECIAL_TOKENS",
    "GPT2_PATTERN",
    "CharTokenizer",
    "Tokenizer",
    "byte_tokenizer",
    "load_tokenizer",
    "train_tokenizer",
    "train_tokenizer_on_texts",
]
