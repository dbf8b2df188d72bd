"""Autoregressive generation with a KV cache, batched prompts and streaming."""

from gptlab.generation.decode import Decoder, fit_prompt
from gptlab.generation.sampling import SamplingParams, next_tokens
from gptlab.generation.text import TextStream, generate, stream, stream_batch

__all__ = ["Decoder", "SamplingParams", "TextStream", "fit_prompt", "generate", "next_tokens", "stream", "stream_batch"]
