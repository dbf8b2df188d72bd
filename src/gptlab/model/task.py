"""What a GPT-1 task head is for: its task type, labels and special tokens, saved in a fine-tuned
checkpoint's config.json under "task". Plain data, without PyTorch, so that task files can be read
and checkpoints described without it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gptlab.errors import GptlabError
from gptlab.tokenizer.bpe import GPT1_SPECIAL_TOKENS, Tokenizer

TASK_TYPES = ("classification", "entailment", "similarity", "multiple_choice")

Label = str | int


def is_label(value: Any) -> bool:
    return type(value) in (str, int)


@dataclass(frozen=True)
class TaskSpec:
    """What a fine-tuned model is for; saved in its checkpoint's config.json under "task"."""

    type: str
    labels: tuple[Label, ...]
    """The head's classes in output order (sorted training labels); empty for multiple choice."""
    start: int
    delimiter: int
    extract: int
    pad: int
    """Fills batches after e: <|endoftext|> as GPT-2 fine-tuning uses, else s (neither follows e)."""
    clf_pdrop: float = 0.1
    lm_coef: float = 0.5
    """λ of GPT-1's L3 = L2 + λ·L1 (the auxiliary LM loss); 0 turns it off."""

    @classmethod
    def create(
        cls, type: str, labels: Sequence[Label], tokenizer: Tokenizer, clf_pdrop: float = 0.1, lm_coef: float = 0.5
    ) -> TaskSpec:
        """The spec for `tokenizer`, which must already hold GPT-1's special tokens (add_special_tokens)."""
        start, delimiter, extract = (tokenizer.special_id(name) for name in GPT1_SPECIAL_TOKENS)
        pad = tokenizer.eot_id if tokenizer.eot_id is not None else start
        return cls.from_dict(
            dict(type=type, labels=list(labels), start=start, delimiter=delimiter, extract=extract, pad=pad,
                 clf_pdrop=clf_pdrop, lm_coef=lm_coef),
            "task",
        )

    @property
    def n_out(self) -> int:
        """Head outputs per example: one per label, or one score per choice."""
        return 1 if self.type == "multiple_choice" else len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> TaskSpec:
        """Checked field by field: a bad spec is a one-line error naming `source`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        if not isinstance(data, dict) or not required <= set(data) <= fields:
            raise GptlabError(f"{source}: a task spec is an object with fields {', '.join(sorted(fields))}")
        labels = data["labels"]
        spec = cls(**{**data, "labels": tuple(labels) if isinstance(labels, list) else labels})
        if spec.type not in TASK_TYPES:
            raise GptlabError(f"{source}: task type {spec.type!r} is not one of {', '.join(TASK_TYPES)}")
        if not isinstance(spec.labels, tuple) or not all(is_label(x) for x in spec.labels):
            raise GptlabError(f"{source}: task labels must be a list of strings or integers")
        if spec.type == "multiple_choice" and spec.labels:
            raise GptlabError(f"{source}: a multiple_choice task has no labels (it scores each choice)")
        if spec.type != "multiple_choice" and (len(set(spec.labels)) != len(spec.labels) or len(spec.labels) < 2):
            raise GptlabError(f"{source}: a {spec.type} task needs two or more distinct labels, got {list(spec.labels)}")
        if not all(type(i) is int and i >= 0 for i in (spec.start, spec.delimiter, spec.extract, spec.pad)):
            raise GptlabError(f"{source}: task token ids must be integers >= 0")
        if not (type(spec.clf_pdrop) in (int, float) and 0 <= spec.clf_pdrop < 1):
            raise GptlabError(f"{source}: clf_pdrop must be in [0, 1), got {spec.clf_pdrop!r}")
        if not (type(spec.lm_coef) in (int, float) and spec.lm_coef >= 0):
            raise GptlabError(f"{source}: lm_coef must be a number >= 0, got {spec.lm_coef!r}")
        return spec
