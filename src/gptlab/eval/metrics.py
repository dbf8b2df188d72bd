"""Task metrics, aggregated as lm-evaluation-harness aggregates them.

Per-document scores are averaged; the standard error of a mean is the sample standard deviation
over sqrt(n) (the harness's `mean_stderr`). Perplexities and bits per byte are ratios of sums over
the whole split, for which the harness reports no standard error (and it bootstraps `perplexity`,
which gptlab does not), so theirs is None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

ANSWER_PROMPT = "Answer:"
"""GPT-3's unconditional prompt for `acc_uncond` (§2.4); the continuation keeps its leading space."""


@dataclass(frozen=True)
class Metric:
    value: float
    stderr: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "stderr": self.stderr}


def mean_metric(values: Sequence[float]) -> Metric:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Metric(mean, None)
    return Metric(mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n))


def _argmax(scores: Sequence[float]) -> int:
    """First index of the largest score, as numpy's argmax breaks ties."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def choice_scores(
    logprobs: Sequence[float], n_tokens: Sequence[int], choices: Sequence[str], uncond: Sequence[float]
) -> dict[str, int]:
    """Which choice each multiple-choice rule picks: `acc` by summed log-likelihood, `acc_norm` per
    character of the choice (the harness's rule), `acc_token` per token (GPT-3's), `acc_uncond` by
    log P(choice | context) - log P(choice | "Answer:") (GPT-3's for ARC, OpenBookQA, RACE)."""
    return {
        "acc": _argmax(logprobs),
        "acc_norm": _argmax([lp / len(c) if c else -math.inf for lp, c in zip(logprobs, choices, strict=True)]),
        "acc_token": _argmax([lp / n for lp, n in zip(logprobs, n_tokens, strict=True)]),
        "acc_uncond": _argmax([lp - u for lp, u in zip(logprobs, uncond, strict=True)]),
    }


def rolling_metrics(logprobs: Sequence[float], texts: Sequence[str], n_tokens: int) -> dict[str, Metric]:
    """Perplexities and bits per byte over a set of documents: total log-likelihood over total
    words (whitespace-separated, as the harness counts them), bytes, or tokens."""
    total = sum(logprobs)
    sizes = [text_size(t) for t in texts]
    words, n_bytes = sum(w for w, _ in sizes), sum(b for _, b in sizes)
    return {
        "word_perplexity": Metric(math.exp(-total / words), None),
        "byte_perplexity": Metric(math.exp(-total / n_bytes), None),
        "bits_per_byte": Metric(-total / n_bytes / math.log(2), None),
        "token_perplexity": Metric(math.exp(-total / n_tokens) if n_tokens else math.nan, None),
    }


def text_size(text: str) -> tuple[int, int]:
    """(words, bytes) of a text: what its perplexities are taken per."""
    return len(re.split(r"\s+", text)), len(text.encode("utf-8"))
