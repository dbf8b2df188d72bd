"""Log-probabilities of given tokens, fast: the one scorer of the evaluator and the server's `echo`.

Requests that share a context (the choices of one multiple-choice question) run that context
through the model once; its keys and values are then copied to one cache row per continuation and
only the continuations are run against them. Batches are formed longest first to limit padding. The
output head is applied only where a continuation token is predicted, not at every position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from gptlab import threads
from gptlab.errors import GptlabError
from gptlab.model import GPT, KVCache


@dataclass(frozen=True)
class TokenScore:
    logprob: float
    """Sum of the log-probabilities of the continuation tokens."""
    greedy: bool
    """Whether greedy decoding from the context produces exactly the continuation."""
    n_tokens: int
    logprobs: list[float] = field(default_factory=list)
    """Each continuation token's log-probability."""
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    """At each continuation token, the `top_n` most likely tokens and their log-probabilities."""


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


def score_pairs(
    model: GPT, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 16, progress: bool = False, *,
    top_n: int = 0, vocab_size: int | None = None,
) -> list[TokenScore]:
    """Score (context ids, continuation ids) pairs, each context computed once per batch. `vocab_size`: the
    tokenizer's, when the model's vocabulary is padded past it and the padding ids should get no mass."""
    if batch_size < 1:
        raise GptlabError(f"batch size must be at least 1, got {batch_size}")
    n_ctx = model.config.n_ctx
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
            _score_batch(model, batch, pairs, results, top_n, vocab_size)
            bar.update(sum(len(g.members) for g in batch))
            batch = []
        batch.append(part)
    if batch:
        _score_batch(model, batch, pairs, results, top_n, vocab_size)
        bar.update(sum(len(g.members) for g in batch))
    bar.close()
    return results  # type: ignore[return-value]


@torch.inference_mode()
def _score_batch(
    model: GPT, groups: list[_Group], pairs: Sequence[tuple[list[int], list[int]]], out: list[TokenScore | None],
    top_n: int, vocab_size: int | None,
) -> None:
    device = model.wte.weight.device
    threads.tick(device)
    conts = [pairs[i][1] for g in groups for i in g.members]
    owners = [row for row, g in enumerate(groups) for _ in g.members]
    width = max(len(g.context) for g in groups)
    extra = max(len(c) for c in conts) - 1  # continuation tokens fed as input; the last is only predicted
    cache = KVCache(model.config, len(conts), width + extra, device=device, dtype=model.wte.weight.dtype)
    ids = torch.zeros(len(groups), width, dtype=torch.long, device=device)
    for row, g in enumerate(groups):  # right-padded: the padding lies past each row's length
        ids[row, : len(g.context)] = torch.tensor(g.context, device=device)
    lengths = torch.tensor([len(g.context) for g in groups], device=device)
    cache.prefill(slice(0, len(groups)))
    hidden = model(ids, cache=cache, return_hidden=True)
    first = hidden[torch.arange(len(groups), device=device), lengths - 1][owners]  # [R, d]: predicts token 1
    if extra:
        cache.lengths[: len(groups)] = lengths
        cache.copy(range(len(conts)), owners)  # each continuation's row starts from its context
        inputs = torch.zeros(len(conts), extra, dtype=torch.long, device=device)
        for r, c in enumerate(conts):
            inputs[r, : len(c) - 1] = torch.tensor(c[:-1], device=device)
        # right padding after each continuation only follows the positions that are scored
        cache.decode(len(conts), extra)
        rest = model(inputs, cache=cache, return_hidden=True)  # [R, extra, d]
        hidden = torch.cat([first[:, None], rest], dim=1)
    else:
        hidden = first[:, None]
    counts = torch.tensor([len(c) for c in conts], device=device)
    wanted = torch.arange(hidden.shape[1], device=device)[None, :] < counts[:, None]
    targets = torch.zeros(wanted.shape, dtype=torch.long, device=device)
    for r, c in enumerate(conts):
        targets[r, : len(c)] = torch.tensor(c, device=device)
    logits = model.lm_head(hidden[wanted])  # only scored positions
    logprobs = F.log_softmax(logits[:, :vocab_size].float(), dim=-1)
    picked = logprobs.gather(1, targets[wanted][:, None])[:, 0]
    hits = logprobs.argmax(-1) == targets[wanted]
    owner = torch.arange(len(conts), device=device)[:, None].expand_as(wanted)[wanted]
    sums = torch.zeros(len(conts), dtype=torch.float64, device=device).index_add_(0, owner, picked.double())
    misses = torch.zeros(len(conts), dtype=torch.long, device=device).index_add_(0, owner, (~hits).long())
    each = picked.tolist()
    top: list[list[tuple[int, float]]] = [[] for _ in each]
    if top_n:
        values, top_ids = logprobs.topk(top_n)
        top = [list(zip(i, v, strict=True)) for i, v in zip(top_ids.tolist(), values.tolist(), strict=True)]
    members = [i for g in groups for i in g.members]
    start = 0
    for r, i in enumerate(members):
        n = len(conts[r])
        out[i] = TokenScore(float(sums[r]), bool(misses[r] == 0), n, each[start : start + n], top[start : start + n])
        start += n
