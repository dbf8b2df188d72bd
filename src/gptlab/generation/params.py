"""What to generate and how to pick each token: one set of defaults, for the library and the CLI.

Kept free of PyTorch so that `gptlab generate --help` can show these defaults at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from gptlab.errors import GptlabError

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
