"""Batched autoregressive decoding with a KV cache.

Prompts of different lengths are left-padded into one batch; the attention mask hides the padding
and positions count real tokens only, so each row decodes exactly as it would alone.
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError
from gptlab.generation.sampling import SamplingParams, apply_repetition_penalty, next_tokens
from gptlab.model import GPT, KVCache


def fit_prompt(prompt: list[int], n_ctx: int, params: SamplingParams) -> list[int]:
    """The prompt as it will be fed, or a clear error when it cannot fit with the requested tokens."""
    new = params.max_new_tokens or 1  # the default generates as many tokens as fit, at least one
    room = n_ctx - new
    if room < 1:
        raise GptlabError(f"max_new_tokens {new} leaves no room for a prompt in the model's context of {n_ctx}")
    if len(prompt) <= room:
        return prompt
    keep = n_ctx - params.reserved(n_ctx)
    if params.truncate:
        return prompt[-keep:]
    fewer = ", lower max_new_tokens," if params.max_new_tokens else ""
    raise GptlabError(
        f"prompt is {len(prompt)} tokens, but the model's context is {n_ctx} tokens and holds at most {room} beside "
        f"{new} new {'token' if new == 1 else 'tokens'}; shorten the prompt{fewer} or truncate (--truncate) to keep "
        f"the last {keep}"
    )


class Decoder:
    """Decoding state for one batch. `step()` returns the next token of every active row."""

    def __init__(self, model: GPT, prompts: list[list[int]], params: SamplingParams, vocab_size: int | None = None):
        """`vocab_size`: the tokenizer's, when the model's vocabulary is padded past it; the padding
        ids are never sampled, as the tokenizer could not decode them."""
        if not prompts or any(not p for p in prompts):
            raise GptlabError("every prompt needs at least one token")
        self.model = model
        self.params = params
        device = next(model.parameters()).device
        self.prompts = [fit_prompt(p, model.config.n_ctx, params) for p in prompts]
        width = max(len(p) for p in self.prompts)
        self.max_new_tokens = params.new_tokens(width, model.config.n_ctx)
        self.vocab_size = vocab_size or model.config.vocab_size
        total = width + self.max_new_tokens
        ids = torch.zeros(len(prompts), width, dtype=torch.long, device=device)
        self.mask = torch.zeros(len(prompts), total, dtype=torch.bool, device=device)
        for row, prompt in enumerate(self.prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, device=device)
            self.mask[row, width - len(prompt) : width] = True
        self.seen = torch.zeros(len(prompts), self.vocab_size, dtype=torch.bool, device=device)
        self.seen.scatter_(1, ids, self.mask[:, :width])
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        self.cache = KVCache(model.config, len(prompts), total, device=device, dtype=model.wte.weight.dtype)
        self.rows = torch.arange(len(prompts), device=device)  # original index of each row still decoding
        self.steps = 0
        self._pending = ids

    @property
    def done(self) -> bool:
        return not len(self.rows) or self.steps >= self.max_new_tokens

    @torch.inference_mode()
    def step(self) -> dict[int, int]:
        if self.done:
            return {}
        end = self.cache.length + self._pending.shape[1]
        logits = self.model(self._pending, attention_mask=self.mask[:, :end], cache=self.cache)
        logits = logits[:, -1, : self.vocab_size]
        logits = apply_repetition_penalty(logits, self.seen, self.params.repetition_penalty)
        tokens = next_tokens(logits, self.params, self.generator)
        self.mask[:, end] = True
        self.seen[torch.arange(len(tokens)), tokens] = True
        self._pending = tokens[:, None]
        self.steps += 1
        return dict(zip(self.rows.tolist(), tokens.tolist(), strict=True))

    def finish(self, finished: set[int]) -> None:
        """Stop decoding the given original rows; the others carry on in a smaller batch."""
        keep = torch.tensor([r not in finished for r in self.rows.tolist()], device=self.rows.device)
        if keep.all():
            return
        self.rows, self.mask, self.seen, self._pending = (t[keep] for t in (self.rows, self.mask, self.seen, self._pending))
        self.cache.select(keep)
