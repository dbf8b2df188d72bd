"""GPT-1 task fine-tuning as an objective of the one training loop (gptlab.train.objective.Objective):
L3 = L2 + λ·L1, the task's cross-entropy plus λ times the LM loss on the same sequences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gptlab.data.sampler import ExampleSampler
from gptlab.finetune.tasks import Example, TaskData
from gptlab.model.task import TaskSpec
from gptlab.train.objective import Autocast, Forward, SampledObjective


@dataclass
class Batch:
    """Examples as one right-padded tensor of sequences (an example's sequences are adjacent rows)."""

    idx: torch.Tensor
    """[N, T] token ids, padded with the spec's pad id after each sequence's e."""
    lengths: torch.Tensor
    """[N] real tokens per row; e sits at lengths - 1."""
    choices: list[int]
    """Rows (choices) per example: what multiple choice's softmax runs over."""
    labels: torch.Tensor | None
    """[B] the right label's (or choice's) index per example; None for unlabelled rows."""

    def to(self, device: torch.device) -> Batch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        idx, lengths = (t.to(device, non_blocking=True) for t in (self.idx, self.lengths))
        return Batch(idx, lengths, self.choices, labels)


def collate(examples: Sequence[Example], spec: TaskSpec) -> Batch:
    sequences = [s for example in examples for s in example.sequences]
    lengths = torch.tensor([len(s) for s in sequences])
    idx = torch.full((len(sequences), int(lengths.max())), spec.pad, dtype=torch.long)
    for row, s in enumerate(sequences):
        idx[row, : len(s)] = torch.tensor(s)
    labelled = all(e.label is not None for e in examples)
    labels = torch.tensor([e.label for e in examples]) if labelled else None
    return Batch(idx, lengths, [len(e.sequences) for e in examples], labels)


def run_batch(forward: Forward, batch: Batch, spec: TaskSpec, lm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(Task logits [B, classes or choices], LM loss over the real tokens or None): one forward call.

    Multiple choice pads examples with fewer choices with -inf, which softmax and cross-entropy ignore.
    """
    lm_logits, head_out = forward(batch.idx, extract=batch.lengths - 1, lm_logits=lm)
    head_out = head_out.float()
    if spec.type == "multiple_choice":
        scores = head_out.squeeze(-1).split(batch.choices)
        logits = head_out.new_full((len(scores), max(batch.choices)), float("-inf"))
        for i, s in enumerate(scores):
            logits[i, : len(s)] = s
    else:
        logits = head_out
    if not lm:
        return logits, None
    real = torch.arange(batch.idx.shape[1] - 1, device=batch.idx.device) < (batch.lengths[:, None] - 1)
    lm_loss = F.cross_entropy(lm_logits[:, :-1][real].float(), batch.idx[:, 1:][real])
    return logits, lm_loss


@dataclass
class TaskObjective(SampledObjective):
    """Fine-tuning on one GPT-1 task; training items are example indices (an example is 1, 2 or k sequences).

    Validation reports the task's cross-entropy (without the LM term, so runs with different λ compare)
    and accuracy over every validation example; the best checkpoint is the one with the highest accuracy.
    """

    train: TaskData
    val: TaskData | None
    spec: TaskSpec
    seed: int
    best: tuple[str, str] | None = ("val_acc", "max")

    def __post_init__(self) -> None:
        self.sampler = ExampleSampler(len(self.train.examples), self.seed)

    def loss(self, forward: Forward, items: np.ndarray, autocast: Autocast, device: torch.device) -> torch.Tensor:
        batch = collate([self.train.examples[i] for i in items], self.spec).to(device)
        lm = self.spec.lm_coef > 0
        with autocast():
            logits, lm_loss = run_batch(forward, batch, self.spec, lm)
        loss = F.cross_entropy(logits, batch.labels)
        return loss + self.spec.lm_coef * lm_loss if lm else loss

    @torch.no_grad()
    def validate(self, model: torch.nn.Module, autocast: Autocast, device: torch.device, batch: int) -> dict[str, float]:
        if self.val is None or not self.val.examples:
            return {}
        nll = correct = 0.0
        examples = self.val.examples
        for i in range(0, len(examples), batch):
            b = collate(examples[i : i + batch], self.spec).to(device)
            with autocast():
                logits, _ = run_batch(model, b, self.spec, lm=False)
            nll += F.cross_entropy(logits, b.labels, reduction="sum").item()
            correct += (logits.argmax(-1) == b.labels).sum().item()
        return {"val_loss": nll / len(examples), "val_acc": correct / len(examples)}
