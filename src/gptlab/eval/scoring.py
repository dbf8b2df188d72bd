"""Log-likelihood scoring under lm-evaluation-harness's contract: how requests become token pairs, and
rolling windows; the scoring itself is the engine's (gptlab.engine.scoring, fast: each shared context runs once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gptlab.engine.scoring import TokenScore, score_pairs
from gptlab.errors import GptlabError

if TYPE_CHECKING:
    from gptlab.language_model import LanguageModel

__all__ = ["TokenScore", "encode_pair", "loglikelihood", "loglikelihood_rolling", "rolling_windows", "score_tokens"]


def encode_pair(lm: LanguageModel, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of a (context, continuation) pair, split where lm-evaluation-harness splits them.

    Whitespace that ends the context moves to the continuation (BPE attaches a space to the word
    after it); the pair is encoded whole and the continuation is what follows the context's own
    encoding. An empty context is <|endoftext|> alone, unless the continuation starts with it.
    """
    tokenizer = lm.require_tokenizer()
    if not context:
        eot = _eot(lm)
        ids = tokenizer.encode(continuation)
        return ([eot], ids) if not ids or ids[0] != eot else (ids[:1], ids[1:])
    stripped = context.rstrip()
    context, continuation = stripped, context[len(stripped):] + continuation
    context_ids = tokenizer.encode(context)
    return context_ids, tokenizer.encode(context + continuation)[len(context_ids):]


def _eot(lm: LanguageModel) -> int:
    eot = lm.require_tokenizer().eot_id
    if eot is None:
        raise GptlabError("the tokenizer has no <|endoftext|> token to stand for an empty context")
    return eot


def loglikelihood(
    lm: LanguageModel, requests: Sequence[tuple[str, str]], batch_size: int = 16, progress: bool = False
) -> list[tuple[float, bool]]:
    """(sum of log P(continuation tokens | context), greedy decoding yields them) per request."""
    scores = score_tokens(lm, [encode_pair(lm, c, x) for c, x in requests], batch_size, progress)
    return [(s.logprob, s.greedy) for s in scores]


def rolling_windows(tokens: list[int], prefix: int, n_ctx: int) -> list[tuple[list[int], list[int]]]:
    """Disjoint (context, continuation) windows scoring every token once, each with the most context
    that fits: the first window predicts up to n_ctx tokens after `prefix`, each later one the next
    up to n_ctx tokens, conditioned on the tokens just before them (lm-evaluation-harness's rule)."""
    windows = []
    for start in range(0, len(tokens), n_ctx):
        end = min(start + n_ctx, len(tokens))
        windows.append(([prefix] if start == 0 else tokens[end - n_ctx - 1 : start], tokens[start:end]))
    return windows


def loglikelihood_rolling(
    lm: LanguageModel, texts: Sequence[str], batch_size: int = 16, progress: bool = False
) -> list[float]:
    """Total log-likelihood of each text, every token scored once (see `rolling_windows`)."""
    tokenizer, eot, n_ctx = lm.require_tokenizer(), _eot(lm), lm.config.n_ctx
    owners, pairs = [], []
    for i, text in enumerate(texts):
        for window in rolling_windows(tokenizer.encode(text), eot, n_ctx):
            owners.append(i)
            pairs.append(window)
    totals = [0.0] * len(texts)
    for owner, score in zip(owners, score_tokens(lm, pairs, batch_size, progress), strict=True):
        totals[owner] += score.logprob
    return totals


def score_tokens(
    lm: LanguageModel, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 16, progress: bool = False
) -> list[TokenScore]:
    """Score (context ids, continuation ids) pairs with gptlab's one scorer (gptlab.engine.scoring)."""
    return score_pairs(lm.model, pairs, batch_size, progress)
