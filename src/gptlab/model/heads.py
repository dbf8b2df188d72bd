"""GPT-1's task head beside the decoder: a GPT whose final hidden state at the extract token e also feeds a
linear classifier. Fine-tuned checkpoints hold one (see gptlab.model.task for what the head is for)."""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache
from gptlab.model.task import TaskSpec


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
