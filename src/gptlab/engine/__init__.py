"""The inference engine: continuous batching over a slotted KV cache, per-request sampling and seeds,
log-probabilities, finish reasons, cancellation, beam search, and the scorer of given tokens."""

from gptlab.engine.engine import Completion, Engine, TokenOutput, fit_prompt
from gptlab.engine.scoring import TokenScore, score_pairs

__all__ = ["Completion", "Engine", "TokenOutput", "TokenScore", "fit_prompt", "score_pairs"]
