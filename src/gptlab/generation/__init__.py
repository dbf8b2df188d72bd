"""Autoregressive generation with a KV cache, batched prompts and streaming."""

from gptlab.generation.params import DEFAULT_MAX_NEW_TOKENS, SamplingParams
from gptlab.lazy import lazy_exports

# The parameters are a plain dataclass (the CLI reads its defaults); decoding loads PyTorch on first use.
_EXPORTS = {
    "next_tokens": "sampling", "TextStream": "pieces", "generate": "text", "stream": "text", "stream_batch": "text",
}

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "SamplingParams", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
