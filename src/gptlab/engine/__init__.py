"""The inference engine: continuous batching over a slotted KV cache, per-request sampling and seeds,
log-probabilities, finish reasons, cancellation and beam search."""

from gptlab.engine.engine import Completion, Engine, TokenOutput, fit_prompt

__all__ = ["Completion", "Engine", "TokenOutput", "fit_prompt"]
