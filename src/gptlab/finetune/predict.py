"""Predictions of a GPT-1 fine-tuned checkpoint on new rows (which need no label), and their accuracy
where the rows carry their labels."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from gptlab.language_model import LanguageModel
from gptlab.errors import GptlabError
from gptlab.eval.metrics import Metric, mean_metric
from gptlab.files import check_not_under_a_file
from gptlab.finetune.objective import collate, run_batch
from gptlab.finetune.tasks import Row, as_rows, encode
from gptlab.model.heads import TaskModel


@torch.no_grad()
def predict(lm: LanguageModel, rows: Iterable[Row | dict[str, Any]], batch_size: int = 32) -> list[dict[str, Any]]:
    """Per row, in order: {"label": the predicted label, "probabilities": {label: p}}; for multiple
    choice {"label": the chosen index, "probabilities": [p for each choice]}. Rows need no label;
    when every row has one, each must be a label the model was trained on, and each prediction also
    says whether it is "correct" (see `accuracy`)."""
    model = lm.model
    if not isinstance(model, TaskModel):
        raise GptlabError(f"{lm.path or 'this model'} is a language model, not a fine-tuned task model (gptlab finetune)")
    if batch_size < 1:
        raise GptlabError(f"batch size must be at least 1, got {batch_size}")
    spec = model.spec
    rows = as_rows(rows)
    labelled = bool(rows) and all("label" in row.fields for row in rows)  # labels given must be ones the model knows
    data = encode(spec, lm.require_tokenizer(), rows, model.config.n_ctx, labelled=labelled)
    device = next(model.parameters()).device
    model.eval()
    out: list[dict[str, Any]] = []
    for i in range(0, len(data.examples), batch_size):
        examples = data.examples[i : i + batch_size]
        batch = collate(examples, spec).to(device)
        logits, _ = run_batch(model, batch, spec, lm=False)
        for probs, k, example in zip(logits.softmax(-1).tolist(), batch.choices, examples, strict=True):
            if spec.type == "multiple_choice":
                probs = probs[:k]
                best = max(range(k), key=probs.__getitem__)
                out.append({"label": best, "probabilities": probs})
            else:
                best = max(range(len(probs)), key=probs.__getitem__)
                out.append({"label": spec.labels[best], "probabilities": dict(zip(map(str, spec.labels), probs))})
            if labelled:
                out[-1]["correct"] = best == example.label
    return out


def accuracy(predictions: list[dict[str, Any]]) -> Metric | None:
    """The share of correct predictions, with its standard error; None unless every row had a label."""
    if not predictions or not all("correct" in p for p in predictions):
        return None
    return mean_metric([float(p["correct"]) for p in predictions])


def check_output(output: str | os.PathLike, input: str | os.PathLike) -> None:
    """Refuse, before any prediction is made, an output path that cannot be written as a file or that is
    the input itself (by any name or link: writing it would replace the rows being read)."""
    output, input = Path(output), Path(input)
    if output.is_dir():
        raise GptlabError(f"the output path {output} is a directory; name a file in it instead")
    check_not_under_a_file(output.parent, output)
    if output.exists() and input.exists() and os.path.samefile(output, input):
        raise GptlabError(f"the output path {output} is the input file {input}: writing it would replace the rows "
                          f"being read; choose another output path")
