"""Log-likelihood scoring under lm-evaluation-harness's contract, fast.

Requests that share a context (the choices of one multiple-choice question) run that context
through the model once; its keys and values are then copied to one cache row per continuation and
only the continuations are run against them. Contexts are left-padded (positions count real
tokens, so padding changes nothing) and batches are formed longest first to limit padding. The
output head is applied only where a continuation token is predicted, not at every position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm import tqdm

from gptlab import threads
from gptlab.errors import GptlabError
from gptlab.model import KVCache

if TYPE_CHECKING:
    from gptlab.checkpoint.io import LanguageModel


@dataclass(frozen=True)
class TokenScore:
    logprob: float
    """Sum of the log-probabilities of the continuation tokens."""
    greedy: bool
    """Whether greedy decoding from the context produces exactly the continuation."""
    n_tokens: int


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


@dataclass
class _Group:
    context: tuple[int, ...]
    members: list[int]
    """Indices of the requests continuing this context."""


def _fit(context: list[int], continuation: list[int], n_ctx: int) -> tuple[int, ...]:
    """The context the model sees: the model reads at most n_ctx tokens, the last continuation token
    only being predicted, so a long context loses its start (as lm-evaluation-harness truncates)."""
    if len(continuation) > n_ctx:
        raise GptlabError(f"a continuation of {len(continuation)} tokens does not fit the model's context of {n_ctx}")
    return tuple(context[-(n_ctx + 1 - len(continuation)):])


def score_tokens(
    lm: LanguageModel, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 16, progress: bool = False
) -> list[TokenScore]:
    """Score (context ids, continuation ids) pairs, each context computed once per batch."""
    if batch_size < 1:
        raise GptlabError(f"batch size must be at least 1, got {batch_size}")
    n_ctx = lm.config.n_ctx
    groups: dict[tuple[int, ...], _Group] = {}
    for i, (context, continuation) in enumerate(pairs):
        if not context or not continuation:
            raise GptlabError("every scoring request needs at least one context and one continuation token")
        key = _fit(context, continuation, n_ctx)
        groups.setdefault(key, _Group(key, [])).members.append(i)
    # a group larger than a batch is split; its context is then computed once per part
    parts = [_Group(g.context, g.members[i : i + batch_size]) for g in groups.values() for i in range(0, len(g.members), batch_size)]
    longest = {id(g): max(len(pairs[i][1]) for i in g.members) for g in parts}
    parts.sort(key=lambda g: (-len(g.context), -longest[id(g)]))
    results: list[TokenScore | None] = [None] * len(pairs)
    bar = tqdm(total=len(pairs), desc="scoring", unit="req", disable=not progress, leave=False)
    batch: list[_Group] = []
    for part in parts:
        # a batch holds its widest context and longest continuation side by side: both must fit
        width = max(len(g.context) for g in [*batch, part]) + max(longest[id(g)] for g in [*batch, part]) - 1
        if batch and (sum(len(g.members) for g in batch) + len(part.members) > batch_size or width > n_ctx):
            _score_batch(lm, batch, pairs, results)
            bar.update(sum(len(g.members) for g in batch))
            batch = []
        batch.append(part)
    if batch:
        _score_batch(lm, batch, pairs, results)
        bar.update(sum(len(g.members) for g in batch))
    bar.close()
    return results  # type: ignore[return-value]


@torch.inference_mode()
def _score_batch(
    lm: LanguageModel, groups: list[_Group], pairs: Sequence[tuple[list[int], list[int]]], out: list[TokenScore | None]
) -> None:
    model = lm.model
    device = model.wte.weight.device
    threads.tick(device)
    conts = [pairs[i][1] for g in groups for i in g.members]
    width = max(len(g.context) for g in groups)
    extra = max(len(c) for c in conts) - 1  # continuation tokens fed as input; the last is only predicted
    ids = torch.zeros(len(groups), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(groups), width + extra, dtype=torch.bool, device=device)
    for row, g in enumerate(groups):
        ids[row, width - len(g.context):] = torch.tensor(g.context, device=device)
        mask[row, width - len(g.context):] = True
    cache = KVCache(model.config, len(groups), width + extra, device=device, dtype=model.wte.weight.dtype)
    hidden = model(ids, attention_mask=mask[:, :width], cache=cache, return_hidden=True)[:, -1]  # predicts token 1
    rows = torch.tensor([row for row, g in enumerate(groups) for _ in g.members], device=device)
    first = hidden[rows]  # [R, d]
    if extra:
        cache.select(rows)
        inputs = torch.zeros(len(conts), extra, dtype=torch.long, device=device)
        for r, c in enumerate(conts):
            inputs[r, : len(c) - 1] = torch.tensor(c[:-1], device=device)
        # right padding after each continuation only follows the positions that are scored
        rest = model(inputs, attention_mask=mask[rows], cache=cache, return_hidden=True)  # [R, extra, d]
        hidden = torch.cat([first[:, None], rest], dim=1)
    else:
        hidden = first[:, None]
    lengths = torch.tensor([len(c) for c in conts], device=device)
    wanted = torch.arange(hidden.shape[1], device=device)[None, :] < lengths[:, None]
    targets = torch.zeros(wanted.shape, dtype=torch.long, device=device)
    for r, c in enumerate(conts):
        targets[r, : len(c)] = torch.tensor(c, device=device)
    logprobs = F.log_softmax(model.lm_head(hidden[wanted]).float(), dim=-1)  # only scored positions
    picked = logprobs.gather(1, targets[wanted][:, None])[:, 0]
    hits = logprobs.argmax(-1) == targets[wanted]
    owner = torch.arange(len(conts), device=device)[:, None].expand_as(wanted)[wanted]
    sums = torch.zeros(len(conts), dtype=torch.float64, device=device).index_add_(0, owner, picked.double())
    misses = torch.zeros(len(conts), dtype=torch.long, device=device).index_add_(0, owner, (~hits).long())
    members = [i for g in groups for i in g.members]
    for r, i in enumerate(members):
        out[i] = TokenScore(float(sums[r]), bool(misses[r] == 0), len(conts[r]))
