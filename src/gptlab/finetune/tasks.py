"""GPT-1's input transformations (Radford et al. 2018, Figure 1) over JSONL rows, without PyTorch.

Every task becomes token sequences framed by GPT-1's special tokens s (start), $ (delimiter) and
e (extract); a linear head reads the final hidden state at e:

    classification   {"text", "label"}                     [s; text; e]
    entailment       {"premise", "hypothesis", "label"}    [s; premise; $; hypothesis; e]
    similarity       {"text_a", "text_b", "label"}         [s; a; $; b; e] and [s; b; $; a; e]
    multiple_choice  {"context", "choices", "label"}       [s; context; $; choice_k; e] for each k

Labels are strings or integers; a multiple-choice label is the right choice's index or its text.

Truncation: a sequence longer than the context keeps s, $ and e and drops tokens from the left of
its text parts, always from the currently longest part (the first of equally long ones), until it
fits. The left is dropped because the end of a text sits next to the tokens read at e (the
question before the answer, the premise before the hypothesis). Similarity truncates a and b once,
so both orderings hold the same tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gptlab.errors import GptlabError
from gptlab.files import read_text
from gptlab.model.task import TASK_TYPES, Label, TaskSpec, is_label
from gptlab.tokenizer.bpe import Tokenizer

TEXT_FIELDS = {
    "classification": ("text",),
    "entailment": ("premise", "hypothesis"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("context", "choices"),
}
"""Task type (one of TASK_TYPES) -> the fields a row holds besides its label."""


@dataclass(frozen=True)
class Row:
    """One JSONL row and where it came from ("file:line"), for error messages."""

    where: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Example:
    """A row's token sequences (one; two orderings for similarity; one per choice) and its label's index."""

    sequences: tuple[list[int], ...]
    label: int | None


@dataclass(frozen=True)
class TaskData:
    examples: list[Example]
    truncated: int
    """How many rows were cut to fit the context (see the module's truncation rule)."""


def read_rows(path: str | os.PathLike) -> list[Row]:
    """The JSON objects of a JSONL file, one a line (blank lines skipped)."""
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as e:
            raise GptlabError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(fields, dict):
            raise GptlabError(f"{where}: each line must be a JSON object, got {type(fields).__name__}")
        rows.append(Row(where, fields))
    if not rows:
        raise GptlabError(f"{path} holds no rows")
    return rows


def as_rows(rows: Iterable[Row | dict[str, Any]]) -> list[Row]:
    """Rows given as plain dicts (the Python API) get their position as their location."""
    out = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, Row | dict):
            raise GptlabError(f"row {n}: each row must be a dict, got {type(row).__name__}")
        out.append(row if isinstance(row, Row) else Row(f"row {n}", row))
    return out


def split_holdout(rows: Sequence[Row], fraction: float = 0.1, seed: int = 0) -> tuple[list[Row], list[Row]]:
    """(train, held out): a seeded random `fraction` of the rows (at least one) for validation, both in file order."""
    if not 0 < fraction < 1:
        raise GptlabError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    if len(rows) < 2:
        raise GptlabError(f"cannot hold out validation rows from {len(rows)} training row(s); pass a validation file")
    held = set(np.random.default_rng(seed).permutation(len(rows))[: max(1, round(fraction * len(rows)))].tolist())
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def label_set(task: str, rows: Sequence[Row]) -> list[Label]:
    """The sorted labels of the training rows: the head's classes (none for multiple choice)."""
    if task not in TASK_TYPES:
        raise GptlabError(f"unknown task {task!r}; choose from: {', '.join(TASK_TYPES)}")
    if task == "multiple_choice":
        return []
    labels: dict[Label, Row] = {}
    for row in rows:
        labels.setdefault(_label(row), row)
    kinds = {type(x) for x in labels}
    if len(kinds) > 1:
        first_int = next(r for x, r in labels.items() if type(x) is int)
        first_str = next(r for x, r in labels.items() if type(x) is str)
        raise GptlabError(f"labels mix strings ({first_str.where}) and integers ({first_int.where}); use one kind")
    if len(labels) < 2:
        raise GptlabError(f"the training rows have {len(labels)} distinct label(s) {list(labels)}; a classifier needs two or more")
    return sorted(labels)


def encode(
    spec: TaskSpec, tokenizer: Tokenizer, rows: Sequence[Row], n_ctx: int, labelled: bool = True
) -> TaskData:
    """Rows as token sequences laid out for `spec.type`; unlabelled rows (predict) need no label."""
    if n_ctx < 5:
        raise GptlabError(f"a context of {n_ctx} tokens cannot hold s, $, e and text")
    index = {label: i for i, label in enumerate(spec.labels)}
    examples, truncated = [], 0
    for row in rows:
        texts = [_field(row, name) for name in TEXT_FIELDS[spec.type]]
        label = _label_index(row, spec, index, texts) if labelled else None
        if spec.type == "multiple_choice":
            context = tokenizer.encode(texts[0])
            groups = [[context, tokenizer.encode(choice)] for choice in texts[1]]
        else:
            groups = [[tokenizer.encode(t) for t in texts]]
        fitted = [_fit(group, n_ctx) for group in groups]
        truncated += int(fitted != groups)
        if spec.type == "similarity":
            fitted = [fitted[0], fitted[0][::-1]]
        sequences = tuple(_layout(group, spec) for group in fitted)
        examples.append(Example(sequences, label))
    return TaskData(examples, truncated)


def _layout(parts: list[list[int]], spec: TaskSpec) -> list[int]:
    """[s; part_1; $; part_2; ...; e]."""
    ids = [spec.start, *parts[0]]
    for part in parts[1:]:
        ids += [spec.delimiter, *part]
    return ids + [spec.extract]


def _fit(parts: list[list[int]], n_ctx: int) -> list[list[int]]:
    """Keep the right end of each part, as dropping one token at a time from the left of the longest part
    (the first of equally long ones) would, until s, the parts, the $ between them and e fit `n_ctx`."""
    budget = n_ctx - len(parts) - 1
    lengths = [len(p) for p in parts]
    if sum(lengths) <= budget:
        return parts
    low, high = 0, max(lengths)  # the largest cap on every part's length that fits lies in [low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if sum(min(n, mid) for n in lengths) <= budget else (low, mid)
    keep = [min(n, low) for n in lengths]
    capped = [i for i, n in enumerate(lengths) if n > low]
    for i in capped[len(capped) - (budget - sum(keep)) :]:  # the spare tokens go to the last capped parts
        keep[i] += 1
    return [p[len(p) - k :] for p, k in zip(parts, keep)]


def _field(row: Row, name: str) -> str | list[str]:
    if name not in row.fields:
        raise GptlabError(f"{row.where}: missing field {name!r}")
    value = row.fields[name]
    if name == "choices":
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise GptlabError(f"{row.where}: field 'choices' must be a non-empty list of strings")
    elif not isinstance(value, str):
        raise GptlabError(f"{row.where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _label(row: Row) -> Label:
    if "label" not in row.fields:
        raise GptlabError(f"{row.where}: missing field 'label'")
    label = row.fields["label"]
    if not is_label(label):
        raise GptlabError(f"{row.where}: field 'label' must be a string or an integer, got {json.dumps(label)}")
    return label


def _label_index(row: Row, spec: TaskSpec, index: dict[Label, int], texts: list[Any]) -> int:
    label = _label(row)
    if spec.type == "multiple_choice":
        choices = texts[1]
        if type(label) is int and 0 <= label < len(choices):
            return label
        if isinstance(label, str) and label in choices:
            return choices.index(label)
        raise GptlabError(f"{row.where}: label {label!r} is neither a choice's index (0..{len(choices) - 1}) nor its text")
    if label not in index:
        shown = ", ".join(map(repr, spec.labels[:10])) + (" ..." if len(spec.labels) > 10 else "")
        raise GptlabError(f"{row.where}: label {label!r} is not one of the training labels ({shown})")
    return index[label]

