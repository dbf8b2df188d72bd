"""GPT-1's task head beside the decoder, GPT-1's special tokens added to a pretrained model, and the
head-only variant (train the head and the new token embeddings, the backbone frozen)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.finetune.tasks import TaskSpec
from gptlab.model import GPT, GPTConfig, KVCache
from gptlab.tokenizer import Tokenizer

NO_WEIGHT_DECAY = "no_weight_decay"
"""Attribute set (True) on a parameter that the optimizer must not decay: AdamW's decoupled decay moves
weights even where their gradient is zero, such as the frozen rows of a head-only run's embedding."""


class TaskModel(GPT):
    """A GPT with GPT-1's classifier: dropout, then a bias-free linear map (W_y) of the final hidden state at e.

    Without `extract` it is exactly its GPT (generation, evaluation, export of the backbone); with it, one
    call returns what GPT-1's L3 = L2 + λ·L1 needs, so a DDP-wrapped model is called once per step.
    Its state dict is the GPT's plus `head.weight`.
    """

    def __init__(self, config: GPTConfig, spec: TaskSpec):
        super().__init__(config)
        if max(spec.start, spec.delimiter, spec.extract, spec.pad) >= config.vocab_size:
            raise GptlabError(f"the task's special token ids do not fit the model's vocab_size {config.vocab_size}")
        self.spec = spec
        self.classifier_dropout = nn.Dropout(spec.clf_pdrop)
        self.head = nn.Linear(config.d_model, spec.n_out, bias=False)
        nn.init.normal_(self.head.weight, mean=0.0, std=config.init_std)

    @classmethod
    def from_backbone(cls, backbone: GPT, spec: TaskSpec, seed: int = 0) -> TaskModel:
        """A task model around a pretrained GPT's weights (shared, not copied) and a new head drawn from `seed`."""
        with torch.device("meta"):
            model = cls(backbone.config, spec)
        weights = {k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}  # a former task's head
        model.load_state_dict(weights, strict=False, assign=True)
        model.lm_head.weight = model.wte.weight
        weight = backbone.wte.weight
        head = torch.randn(spec.n_out, backbone.config.d_model, generator=torch.Generator().manual_seed(seed))
        model.head.weight = nn.Parameter((head * backbone.config.init_std).to(weight.device, weight.dtype))
        model.activation_checkpointing = backbone.activation_checkpointing
        return model.train(backbone.training)

    def forward(
        self,
        idx: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_hidden: bool = False,
        extract: torch.Tensor | None = None,
        lm_logits: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor | None, torch.Tensor]:
        """Without `extract`, GPT.forward. With `extract` [N] (the position of e in each row of `idx` [N, T]):
        (LM logits [N, T, V] or None when `lm_logits` is False, head outputs).

        Head outputs: [N, labels] for classification and entailment; [N/2, labels] for similarity, whose
        rows 2i and 2i+1 must be the two orderings of one pair (their states are added before the head);
        [N, 1] for multiple choice, one score per choice row. Rows may be right-padded: the decoder is
        causal, so states up to e do not depend on what follows it.
        """
        if extract is None:
            return super().forward(idx, attention_mask=attention_mask, cache=cache, return_hidden=return_hidden)
        hidden = super().forward(idx, attention_mask=attention_mask, return_hidden=True)
        states = hidden[torch.arange(len(idx), device=idx.device), extract]
        if self.spec.type == "similarity":
            if len(states) % 2:
                raise GptlabError(f"similarity rows come in pairs of orderings; got {len(states)} rows")
            states = states[0::2] + states[1::2]
        head_out = self.head(self.classifier_dropout(states))
        return (self.lm_head(hidden) if lm_logits else None), head_out


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
