"""Beam search's bookkeeping, as GPT-3 decoded its free-form answers (width 4, length penalty 0.6).

The rules follow `transformers`' `generate(num_beams=..., length_penalty=...)` so that the same weights give
the same tokens in both: each step ranks 2·width candidates over all beams, a candidate that ends (end of
text, a stop condition, or the token budget) becomes a finished hypothesis when it ranks within the width,
scored by its log-probability sum / (generated tokens) ** length_penalty, and the best `width` unfinished
candidates carry on. The engine runs the model: it feeds each step's logits of the running beams and
reorders their KV-cache rows as `step` says (gptlab.engine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gptlab.generation.params import EarlyStopping

_DROPPED = -1.0e9  # added to the score of a candidate that ended, so it cannot keep running


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]
    """Generated ids, ending with the token that finished it (end of text or completing a stop string)."""
    score: float
    """Sum of token log-probabilities / len(tokens) ** length_penalty."""


class BeamSearch:
    """One prompt's beams. `ends(tokens)` says whether generated tokens are complete (e.g. their text holds a
    stop string); such a hypothesis is finished like one ending in `eos_id`. `early_stopping` as in
    transformers: True stops once `num_beams` hypotheses are finished, False once the best running beam, at
    its current length, cannot beat the worst of them, "never" once it cannot at the longest length allowed."""

    def __init__(
        self, num_beams: int, max_new_tokens: int, *, length_penalty: float = 1.0, eos_id: int | None = None,
        ends: Callable[[list[int]], bool] | None = None, early_stopping: EarlyStopping = False,
    ):
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.length_penalty = length_penalty
        self.eos_id = eos_id
        self.ends = ends
        self.early_stopping = early_stopping
        self.beams: list[list[int]] = [[]]  # one distinct beam, the prompt, until the first step branches
        self.scores: torch.Tensor | None = None
        self.finished: list[Hypothesis] = []
        self.done = False

    @property
    def best(self) -> Hypothesis:
        return self.finished[0]

    def step(self, logits: torch.Tensor) -> list[int]:
        """Extend the beams by one token from their next-token logits [len(self.beams), vocab]. Returns, for
        each beam kept, the index of the beam it continues (the cache rows to copy); [] once `done`."""
        length = len(self.beams[0]) + 1
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if self.scores is not None:
            logprobs = logprobs + self.scores[:, None]
        vocab = logprobs.shape[-1]
        scores, flat = logprobs.flatten().topk(min(2 * self.num_beams, logprobs.numel()))  # spares for beams that end
        sources, tokens = (flat // vocab).tolist(), (flat % vocab).tolist()
        extended = [self.beams[b] + [t] for b, t in zip(sources, tokens, strict=True)]
        ended = [
            length == self.max_new_tokens or t == self.eos_id or (self.ends is not None and self.ends(seq))
            for t, seq in zip(tokens, extended, strict=True)
        ]
        for rank in range(self.num_beams):  # only the top `num_beams` may finish; the rest are spares to run on
            if ended[rank]:
                self.finished.append(Hypothesis(extended[rank], scores[rank].item() / length**self.length_penalty))
        self.finished = sorted(self.finished, key=lambda h: h.score, reverse=True)[: self.num_beams]
        if all(ended):
            self.done = True
            return []
        self.scores, kept = (scores + _DROPPED * torch.tensor(ended, device=scores.device)).topk(self.num_beams)
        keep = kept.tolist()
        self.beams = [extended[i] for i in keep]
        self.done = self._no_better(self.scores[0].item(), length)
        return [] if self.done else [sources[i] for i in keep]

    def _no_better(self, best_running: float, length: int) -> bool:
        """Whether no running beam can still enter the best `num_beams` finished hypotheses."""
        if len(self.finished) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        hoped = self.max_new_tokens if self.early_stopping == "never" and self.length_penalty > 0 else length
        return best_running / hoped**self.length_penalty <= self.finished[-1].score
