"""Tokenizers: GPT-2 byte-level BPE (load GPT-2's files or train on a corpus, encode at tiktoken's
speed), plus byte- and char-level ones for small experiments."""

from gptlab.lazy import lazy_exports

# Imported on first use: `gptlab --help` needs neither tiktoken nor HF tokenizers.
_EXPORTS = {
    "GPT1_SPECIAL_TOKENS": "bpe", "GPT2_PATTERN": "bpe", "Tokenizer": "bpe",
    "CharTokenizer": "simple", "byte_tokenizer": "simple", "load_tokenizer": "simple",
    "train_tokenizer": "train", "train_tokenizer_on_texts": "train",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
