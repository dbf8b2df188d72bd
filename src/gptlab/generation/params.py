"""What to generate and how to pick each token: one set of defaults, for the library and the CLI.

Kept free of PyTorch so that `gptlab generate --help` can show these defaults at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gptlab.errors import GptlabError

EarlyStopping = bool | Literal["never"]

DEFAULT_MAX_NEW_TOKENS = 128
"""New tokens when max_new_tokens is None, fewer where the model's context ends first."""


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int | None = None
    """Tokens to generate per prompt; default: as many as fit in the context, up to 128 (DEFAULT_MAX_NEW_TOKENS),
    so any checkpoint works."""
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_k: int | None = None
    """Sample from the k most likely tokens."""
    top_p: float | None = None
    """Nucleus sampling: from the smallest set of tokens holding this probability mass."""
    repetition_penalty: float = 1.0
    """CTRL's penalty (>1 discourages repeats): divide positive logits (multiply negative) of tokens already present
    by this."""
    seed: int | None = None
    """Random seed for reproducible samples; any integer (the generator takes it modulo 2**64, its range)."""
    stop: tuple[str, ...] = field(default_factory=tuple)
    """Stop when this text appears."""
    truncate: bool = False
    """Drop the start of prompts that do not fit the context instead of refusing them."""
    logprobs: int | None = None
    """Report each generated token's log-probability and this many most likely alternatives (0: none)."""
    logit_bias: Mapping[int, float] | None = field(default=None, hash=False)
    """OpenAI's logit_bias: token id -> a bias in [-100, 100] added to its logit before sampling (-100 all but
    bans the token, 100 all but forces it)."""
    num_beams: int = 1
    """Above 1: beam search (see gptlab.generation.beam) for the likeliest text, which samples nothing, so
    temperature and seed do not apply and top_k, top_p, repetition_penalty, logit_bias and logprobs are refused."""
    length_penalty: float = 1.0
    """Beam search: a finished beam scores its log-probability / length ** this (transformers' default; GPT-3 0.6)."""
    early_stopping: EarlyStopping = False
    """Beam search: when to stop, as transformers' `early_stopping` (True, False or "never")."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        object.__setattr__(self, "logit_bias", _bias(self.logit_bias))
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise GptlabError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise GptlabError(f"{name} must be a finite number, got {value}")
        if self.temperature < 0:
            raise GptlabError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise GptlabError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GptlabError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.logprobs is not None and self.logprobs < 0:
            raise GptlabError(f"logprobs must be >= 0, got {self.logprobs}")
        if self.repetition_penalty <= 0:
            raise GptlabError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        self._check_beams()

    def _check_beams(self) -> None:
        if type(self.num_beams) is not int or self.num_beams < 1:
            raise GptlabError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if not math.isfinite(self.length_penalty):
            raise GptlabError(f"length_penalty must be a finite number, got {self.length_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise GptlabError(f"early_stopping must be true, false or 'never', got {self.early_stopping!r}")
        if self.num_beams > 1:
            sampling = {"top_k": self.top_k is not None, "top_p": self.top_p is not None,
                        "repetition_penalty": self.repetition_penalty != 1.0, "logit_bias": self.logit_bias is not None,
                        "logprobs": self.logprobs is not None}
            given = [name for name, is_set in sampling.items() if is_set]
            if given:
                raise GptlabError(
                    f"beam search (num_beams > 1) picks the likeliest tokens and samples nothing: drop {', '.join(given)}"
                )

    @property
    def beam_search(self) -> bool:
        return self.num_beams > 1

    def new_tokens(self, prompt_tokens: int, n_ctx: int) -> int:
        """How many tokens to generate after a (fitted) prompt of this length."""
        return self.max_new_tokens or min(DEFAULT_MAX_NEW_TOKENS, n_ctx - prompt_tokens)

    def reserved(self, n_ctx: int) -> int:
        """Context positions a truncated prompt leaves free: the default keeps half the context for it."""
        return self.max_new_tokens or min(DEFAULT_MAX_NEW_TOKENS, n_ctx // 2)


def _bias(bias: Mapping[int, float] | None) -> dict[int, float] | None:
    """A checked copy of a logit bias; None when it biases nothing."""
    if not bias:
        return None
    for token, value in bias.items():
        if not isinstance(token, int) or isinstance(token, bool) or token < 0:
            raise GptlabError(f"logit_bias: token ids must be integers >= 0, got {token!r}")
        if not -100 <= value <= 100:  # false for NaN too
            raise GptlabError(f"logit_bias: the bias of token {token} must be in [-100, 100], got {value}")
    return {token: float(value) for token, value in bias.items()}
