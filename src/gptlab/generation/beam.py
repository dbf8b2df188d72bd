"""Beam search, as GPT-3 decoded its free-form answers (width 4, length penalty 0.6).

The rules follow `transformers`' `generate(num_beams=..., length_penalty=...)` so that the same weights give
the same tokens in both: each step ranks 2·width candidates over all beams, a candidate that ends (end of
text, a stop condition, or the token budget) becomes a finished hypothesis when it ranks within the width,
scored by its log-probability sum / (generated tokens) ** length_penalty, and the best `width` unfinished
candidates carry on. The KV cache keeps one row per beam and is reordered as beams are picked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from gptlab import threads
from gptlab.errors import GptlabError
from gptlab.model import GPT, KVCache

EarlyStopping = bool | Literal["never"]
_DROPPED = -1.0e9  # added to the score of a candidate that ended, so it cannot keep running


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]
    """Generated ids, ending with the token that finished it (end of text or completing a stop string)."""
    score: float
    """Sum of token log-probabilities / len(tokens) ** length_penalty."""


@torch.inference_mode()
def beam_search(
    model: GPT,
    prompt: list[int],
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    length_penalty: float = 0.6,
    eos_id: int | None = None,
    ends: Callable[[list[int]], bool] | None = None,
    early_stopping: EarlyStopping = False,
    vocab_size: int | None = None,
) -> Hypothesis:
    """The best hypothesis continuing `prompt`.

    `ends(tokens)` says whether generated tokens are complete (e.g. their text holds a stop string); such a
    hypothesis is finished like one ending in `eos_id`. `early_stopping` as in transformers: True stops once
    `num_beams` hypotheses are finished, False once the best running beam, at its current length, cannot
    beat the worst of them, "never" once it cannot at the longest length allowed. `vocab_size`: the
    tokenizer's, when the model's vocabulary is padded past it.
    """
    if num_beams < 1:
        raise GptlabError(f"num_beams must be at least 1, got {num_beams}")
    if max_new_tokens < 1:
        raise GptlabError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not prompt:
        raise GptlabError("beam search needs a prompt of at least one token")
    if len(prompt) + max_new_tokens > model.config.n_ctx:
        raise GptlabError(
            f"prompt of {len(prompt)} tokens plus {max_new_tokens} new ones exceeds the model's context of "
            f"{model.config.n_ctx}"
        )
    vocab = vocab_size or model.config.vocab_size
    if vocab < num_beams:
        raise GptlabError(f"num_beams {num_beams} exceeds the vocabulary of {vocab} tokens")
    device = next(model.parameters()).device
    candidates = 2 * num_beams  # enough that `num_beams` unfinished ones remain when some end
    cache = KVCache(model.config, 1, len(prompt) + max_new_tokens, device=device, dtype=model.wte.weight.dtype)
    logits = model(torch.tensor([prompt], device=device), cache=cache)[:, -1]
    cache.select(torch.zeros(num_beams, dtype=torch.long, device=device))  # every beam starts from the prompt
    running_scores = torch.zeros(1, device=device)  # one distinct beam until the first step branches
    beams: list[list[int]] = [[]]
    finished: list[Hypothesis] = []

    for step in range(max_new_tokens):
        length = step + 1
        logprobs = torch.log_softmax(logits[: len(beams), :vocab].float(), dim=-1) + running_scores[:, None]
        scores, flat = logprobs.flatten().topk(min(candidates, logprobs.numel()))
        sources, tokens = (flat // vocab).tolist(), (flat % vocab).tolist()
        extended = [beams[b] + [t] for b, t in zip(sources, tokens, strict=True)]
        ended = [
            length == max_new_tokens or t == eos_id or (ends is not None and ends(seq))
            for t, seq in zip(tokens, extended, strict=True)
        ]
        for rank in range(num_beams):  # only the top `num_beams` may finish; the rest are spares to run on
            if ended[rank]:
                finished.append(Hypothesis(extended[rank], scores[rank].item() / length**length_penalty))
        finished = sorted(finished, key=lambda h: h.score, reverse=True)[:num_beams]
        if all(ended):
            break
        running_scores, kept = (scores + _DROPPED * torch.tensor(ended, device=device)).topk(num_beams)
        keep = kept.tolist()
        beams = [extended[i] for i in keep]
        if _done(finished, running_scores[0].item(), length, max_new_tokens, num_beams, length_penalty, early_stopping):
            break
        cache.reorder(torch.tensor([sources[i] for i in keep], device=device))
        next_ids = torch.tensor([[beam[-1]] for beam in beams], device=device)
        threads.tick(device)
        logits = model(next_ids, cache=cache)[:, -1]
    return finished[0]


def _done(
    finished: list[Hypothesis], best_running: float, length: int, max_new_tokens: int, num_beams: int,
    length_penalty: float, early_stopping: EarlyStopping,
) -> bool:
    """Whether no running beam can still enter the best `num_beams` finished hypotheses."""
    if len(finished) < num_beams:
        return False
    if early_stopping is True:
        return True
    hoped_length = max_new_tokens if early_stopping == "never" and length_penalty > 0 else length
    return best_running / hoped_length**length_penalty <= finished[-1].score
