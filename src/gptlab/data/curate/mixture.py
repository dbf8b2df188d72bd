"""How a mixture divides its token budget among its sources: weights become shares, shares become
whole-token quotas that add up to the budget, and no source is repeated past a limit.

GPT-3 sampled its sources by weight, not by size (Table 2.2): a small, good source is repeated
(Wikipedia 3.4 epochs) while a large one is not read whole (Common Crawl 0.44 epochs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from gptlab.errors import GptlabError
from gptlab.sources import BINARY_SHARE

MAX_EPOCHS = 16.0
"""How many times over a mixture may take a source, unless told otherwise. Repeated tokens are worth less
with each epoch and next to nothing past about 16 (Muennighoff et al. 2023, "Scaling Data-Constrained
Language Models"); GPT-3 took at most 3.4 epochs of any source. A budget that needs more is a mistake."""


def shares(weights: Mapping[str, float], sources: Mapping[str, object]) -> dict[str, float]:
    """Each source's share of the mixture: its weight over their sum."""
    if set(weights) != set(sources):
        raise GptlabError(f"give a weight for each source: sources {sorted(sources)}, weights {sorted(weights)}")
    bad = [f"{name}={weight}" for name, weight in weights.items() if not (math.isfinite(weight) and weight > 0)]
    if bad:
        raise GptlabError(f"mixture weights must be positive numbers, got {', '.join(bad)}")
    largest = max(weights.values())  # divided first, so that huge weights cannot add up to infinity
    total = sum(weight / largest for weight in weights.values())
    return {name: weights[name] / largest / total for name in sources}


def quotas(share: Mapping[str, float], budget: int) -> dict[str, int]:
    """`budget` tokens split by `share` into whole tokens that add up to it (the largest remainders get the odd ones)."""
    exact = {name: part * budget for name, part in share.items()}
    quota = {name: math.floor(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda n: quota[n] - exact[n])[: budget - sum(quota.values())]:
        quota[name] += 1
    return quota


def most_tokens(files: Sequence[str]) -> float:
    """At most how many tokens files hold, each document's <|endoftext|> included, from their sizes alone: no
    tokenizer here makes more than one token of a byte of UTF-8, a JSONL line spends more than a byte on its
    framing, and a text file's repairs (a 3-byte U+FFFD for a bad byte) are bounded by BINARY_SHARE. Compressed
    files (gzip, Parquet) may hold any amount."""
    total = 0.0
    for file in files:
        if file.endswith((".gz", ".parquet")):
            return math.inf
        total += os.path.getsize(file) * (1 + 2 * BINARY_SHARE) + 1
    return total


def check_epochs(name: str, quota: int, available: float, max_epochs: float, bound: bool = False) -> None:
    """Refuse a quota that takes source `name` more than `max_epochs` times over; `available` is its tokens, or
    with `bound` an upper bound on them (the epochs are then a lower bound)."""
    epochs = quota / available
    if epochs > max_epochs:
        held = f"its files hold at most {available:,.0f}" if bound else f"it holds {available:,}"
        raise GptlabError(
            f"the token budget takes source {name} {'at least ' if bound else ''}{epochs:,.3g} times over "
            f"({quota:,} tokens; {held}), more than the {max_epochs:g} epochs allowed: "
            "lower the budget or the source's weight, or raise max_epochs"
        )
