"""Preparing a pretrained model for GPT-1 fine-tuning: its task head around the backbone's weights, GPT-1's
special tokens added, and the head-only variant (train the head and the new token embeddings, the backbone
frozen). The head itself is gptlab.model.heads.TaskModel."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.model.heads import TaskModel
from gptlab.tokenizer import Tokenizer

NO_WEIGHT_DECAY = "no_weight_decay"
"""Attribute set (True) on a parameter that the optimizer must not decay: AdamW's decoupled decay moves
weights even where their gradient is zero, such as the frozen rows of a head-only run's embedding."""


def add_special_tokens(
    model: GPT, tokenizer: Tokenizer, names: Iterable[str], seed: int = 0
) -> tuple[GPT, Tokenizer]:
    """`model` and `tokenizer` grown by the special tokens `names` that are missing (the model's other
    weights are shared with the new one, not copied).

    The embedding (and the tied output head) grows by the new rows, drawn from N(0, init_std) as at
    initialisation, from `seed`; a model padded beyond its tokenizer reuses its spare rows, re-drawn.
    """
    if not isinstance(tokenizer, Tokenizer):
        raise GptlabError(f"adding special tokens needs a byte-level BPE tokenizer, not a {type(tokenizer).__name__}")
    if model.config.vocab_size < tokenizer.vocab_size:
        raise GptlabError(
            f"the model has {model.config.vocab_size} token rows but the tokenizer {tokenizer.vocab_size} tokens"
        )
    grown = tokenizer.with_special_tokens(names)
    new_ids = sorted(set(grown.special_tokens.values()) - set(tokenizer.special_tokens.values()))
    config = model.config.replace(vocab_size=max(model.config.vocab_size, grown.vocab_size))
    old = model.wte.weight.detach()
    wte = torch.cat([old, old.new_empty(config.vocab_size - len(old), config.d_model)])
    if new_ids:
        rows = torch.randn(len(new_ids), config.d_model, generator=torch.Generator().manual_seed(seed))
        wte[new_ids] = (rows * config.init_std).to(wte.device, wte.dtype)
    with torch.device("meta"):
        copy = GPT(config)
    copy.load_state_dict({**model.state_dict(), "wte.weight": wte, "lm_head.weight": wte}, assign=True)
    copy.lm_head.weight = copy.wte.weight
    copy.activation_checkpointing = model.activation_checkpointing
    return copy.train(model.training), grown


def freeze_backbone(model: TaskModel) -> None:
    """Head-only training: only the head and the embedding rows of s, $ and e learn.

    The embedding stays one `wte.weight` (the checkpoint layout): a gradient hook zeroes every other
    row's gradient, and the weight is marked NO_WEIGHT_DECAY so that the optimizer leaves those rows
    exactly as they are (AdamW's step is then exactly zero for them).
    """
    for name, p in model.named_parameters():
        p.requires_grad_(name in ("head.weight", "wte.weight"))
    wte = model.wte.weight
    trained = torch.zeros(len(wte), 1, dtype=wte.dtype, device=wte.device)
    trained[[model.spec.start, model.spec.delimiter, model.spec.extract]] = 1
    wte.register_hook(lambda grad: grad * trained)
    setattr(wte, NO_WEIGHT_DECAY, True)
