"""Fine-tuning settings: the training config with GPT-1's fine-tuning recipe as defaults.

GPT-1 (§4.1): lr 6.25e-5, batch 32, 3 epochs, linear decay with warmup over 0.2% of training,
weight decay 0.01, classifier dropout 0.1, auxiliary LM loss weight λ = 0.5. Steps, warmup and the
evaluation/checkpoint interval default to what the epochs come to (one evaluation per epoch).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from gptlab.errors import GptlabError
from gptlab.settings import FRACTION, NOT_NEGATIVE, POSITIVE, Default, redefault
from gptlab.train.config import TrainConfig


@dataclass
@redefault(
    model=Default(None, "Not a fine-tuning setting: the model is the checkpoint's (train_config.json records its shape)."),
    out="runs/finetune",
    lr=Default(6.25e-5, "Peak learning rate."),
    batch_size=Default(32, "Examples (rows) per optimizer step, over all processes."),
    max_steps=Default(None, "Optimizer steps; defaults to `epochs` passes over the training rows."),
    warmup_steps=Default(None, "Warmup steps; default warmup_fraction of all steps."),
    lr_schedule="linear",
    min_lr_ratio=0.0,
    weight_decay=0.01,
    eval_every=Default(None, "Steps between evaluations; default once per epoch."),
    save_every=Default(None, "Steps between checkpoints; default once per epoch."),
    sample_tokens=0,
)
class FinetuneConfig(TrainConfig):
    """TrainConfig's settings, GPT-1's fine-tuning recipe as their defaults, and the task's own."""

    checkpoint: str = ""
    """The pretrained gptlab checkpoint to start from."""
    task: Literal["classification", "entailment", "similarity", "multiple_choice", "lm"] = "classification"
    """GPT-1's input transformation for the JSONL rows, or `lm`: causal LM fine-tuning on text."""
    train: str = ""
    """Training file: JSONL rows of the task's fields and `label`; text, JSONL or folders for `lm`."""
    valid: str | None = None
    """Validation file; default: a seeded val_fraction of the training rows (or text) held out."""
    trainable: Literal["all", "head"] = "all"
    """`head` trains only the new head and the s/$/e embeddings; the backbone stays bit-identical. Not for `lm`,
    whose output layer is the token embedding itself: there is no head apart from the backbone."""
    epochs: Annotated[float, POSITIVE] = 3.0
    """Passes over the training rows (fractions allowed)."""
    lm_coef: Annotated[float, NOT_NEGATIVE] = 0.5
    """λ in L3 = L2 + λ·L1: weight of the auxiliary language-modelling loss (0 turns it off)."""
    clf_pdrop: Annotated[float, FRACTION] = 0.1
    """Dropout before the classifier head."""
    warmup_fraction: Annotated[float, FRACTION] = 0.002
    """Warmup as a share of all steps, when warmup_steps is not given."""

    verb: typing.ClassVar[str] = "finetune"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.checkpoint and not self.resume:  # a resume takes them from the run
            raise GptlabError("finetune: name the pretrained checkpoint to start from")
        if not self.train and not self.resume:
            raise GptlabError("finetune: name the training rows file (the train setting)")
        if self.model_overrides:
            raise GptlabError("finetune: the model comes from the checkpoint; model fields cannot be changed")
        if self.task == "lm" and self.trainable == "head":
            raise GptlabError(
                "finetune: trainable head needs a task's head; task lm has none apart from the backbone (its output "
                "layer is the token embedding): use trainable all"
            )

    def inputs(self) -> list[str]:
        return [path for path in (self.train, self.valid) if path]

