"""Predictions of a GPT-1 fine-tuned checkpoint on new rows (which need no label)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gptlab.checkpoint.io import LanguageModel
from gptlab.errors import GptlabError
from gptlab.finetune.heads import TaskModel
from gptlab.finetune.objective import collate, run_batch
from gptlab.finetune.tasks import Row, as_rows, encode


@torch.no_grad()
def predict(lm: LanguageModel, rows: Iterable[Row | dict[str, Any]], batch_size: int = 32) -> list[dict[str, Any]]:
    """Per row, in order: {"label": the predicted label, "probabilities": {label: p}}; for multiple
    choice {"label": the chosen index, "probabilities": [p for each choice]}. Rows need no label;
    when every row has one, each must be a label the model was trained on."""
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
        batch = collate(data.examples[i : i + batch_size], spec).to(device)
        logits, _ = run_batch(model, batch, spec, lm=False)
        for probs, k in zip(logits.softmax(-1).tolist(), batch.choices):
            if spec.type == "multiple_choice":
                probs = probs[:k]
                out.append({"label": max(range(k), key=probs.__getitem__), "probabilities": probs})
            else:
                best = max(range(len(probs)), key=probs.__getitem__)
                out.append({"label": spec.labels[best], "probabilities": dict(zip(map(str, spec.labels), probs))})
    return out
