"""How tokens are picked: sampling parameters, samplers, beam search's bookkeeping and streamed text pieces.

The decoder that runs them is gptlab.engine; text in, text out is gptlab.language_model."""

from gptlab.generation.params import DEFAULT_MAX_NEW_TOKENS, SamplingParams
from gptlab.lazy import lazy_exports

# The parameters are a plain dataclass (the CLI reads its defaults); decoding loads PyTorch on first use.
_EXPORTS = {
    "next_tokens": "sampling", "TextStream": "pieces", "BeamSearch": "beam",
}

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "SamplingParams", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
