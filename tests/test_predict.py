"""`gptlab predict`: its output path checked before any prediction, and the accuracy of labelled rows."""

from __future__ import annotations

import importlib
import json
import os

import pytest
import torch
from helpers import assert_one_line_error, run_cli

import gptlab
from gptlab.finetune import TaskModel, TaskSpec, add_special_tokens
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS, byte_tokenizer

ROWS = {
    "classification": [{"text": "a cat sat", "label": "animal"}, {"text": "red and blue", "label": "colour"},
                       {"text": "the dog ran", "label": "animal"}, {"text": "green", "label": "colour"}],
    "entailment": [{"premise": "it rains", "hypothesis": "it is wet", "label": "entailment"},
                   {"premise": "it is dry", "hypothesis": "it rains", "label": "contradiction"},
                   {"premise": "a cat", "hypothesis": "an animal", "label": "entailment"}],
    "similarity": [{"text_a": "a cat", "text_b": "a kitten", "label": 1}, {"text_a": "a car", "text_b": "soup", "label": 0},
                   {"text_a": "big", "text_b": "large", "label": 1}],
    "multiple_choice": [{"context": "sky?", "choices": ["blue", "wet"], "label": 0},
                        {"context": "grass?", "choices": ["loud", "green", "tall"], "label": "green"},
                        {"context": "snow?", "choices": ["cold", "hot"], "label": 0}],
}
"""Labelled rows of each GPT-1 task type (a multiple-choice label is an index or the choice's text)."""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny random-weight fine-tuned checkpoint per task type: its predictions are some right, some wrong."""
    torch.manual_seed(0)
    tokenizer = byte_tokenizer()
    model = gptlab.GPT(gptlab.preset("tiny", n_layer=1, d_model=32, n_head=2, vocab_size=tokenizer.vocab_size))
    model, tokenizer = add_special_tokens(model, tokenizer, GPT1_SPECIAL_TOKENS)
    root = tmp_path_factory.mktemp("predict")
    paths = {}
    for task, rows in ROWS.items():
        labels = [] if task == "multiple_choice" else sorted({r["label"] for r in rows})
        spec = TaskSpec.create(task, labels, tokenizer)
        paths[task] = gptlab.save(root / task, TaskModel.from_backbone(model, spec, seed=1).eval(), tokenizer)
    return paths


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def no_predicting(monkeypatch):
    """Running the model fails the test: what is checked here must be checked before the work."""

    def ran(*_, **__):
        raise AssertionError("the model ran before the output path was checked")

    # the module itself: the package's lazy attribute of that name is the `predict` function
    monkeypatch.setattr(importlib.import_module("gptlab.finetune.predict"), "run_batch", ran)


@pytest.mark.parametrize("task", list(ROWS))
def test_labelled_rows_get_their_accuracy(checkpoints, task, tmp_path, capsys):
    """Rows with gold labels: each prediction says whether it is correct, and stderr gives the accuracy,
    as the share of predicted labels equal to the gold ones."""
    rows = write_rows(tmp_path / "rows.jsonl", ROWS[task])
    result = run_cli(capsys, "predict", checkpoints[task], "--input", rows, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    predictions = [json.loads(line) for line in result.stdout.splitlines()]
    golds = [r["label"] if task != "multiple_choice" or isinstance(r["label"], int) else r["choices"].index(r["label"])
             for r in ROWS[task]]
    assert [p["correct"] for p in predictions] == [p["label"] == gold for p, gold in zip(predictions, golds, strict=True)]
    correct = sum(p["correct"] for p in predictions)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("accuracy")]
    assert line.startswith(f"accuracy {correct / len(golds):.4f} ± ")
    assert line.endswith(f"({correct} of {len(golds)} rows correct)")


def test_unlabelled_rows_get_no_accuracy_and_a_replaced_output_is_said(checkpoints, tmp_path, capsys):
    rows = write_rows(tmp_path / "rows.jsonl", [{"text": "a cat"}, {"text": "blue"}])
    out = tmp_path / "out.jsonl"
    out.write_text("earlier predictions\n")
    result = run_cli(capsys, "predict", checkpoints["classification"], "--input", rows, "--output", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"wrote 2 predictions to {out} (replacing the file that was there)"
    assert [set(json.loads(line)) for line in out.read_text().splitlines()] == [{"label", "probabilities"}] * 2


def test_an_output_that_is_a_directory_is_refused_before_predicting(checkpoints, tmp_path, capsys, no_predicting):
    rows = write_rows(tmp_path / "rows.jsonl", ROWS["classification"])
    (tmp_path / "file").write_text("mine")
    for output, fragments in ((tmp_path, (str(tmp_path), "is a directory")),
                              (tmp_path / "file" / "out.jsonl", (str(tmp_path / "file"), "not a directory"))):
        result = run_cli(capsys, "predict", checkpoints["classification"], "--input", rows, "--output", output)
        assert_one_line_error(result, *fragments)
    assert (tmp_path / "file").read_text() == "mine"


def test_the_input_as_output_is_refused_by_any_name(checkpoints, tmp_path, capsys, monkeypatch, no_predicting):
    """The same file by its own name, another spelling, a symbolic link or a hard link: refused before any
    prediction, the input left as it was."""
    rows = write_rows(tmp_path / "rows.jsonl", ROWS["classification"])
    before = rows.read_text()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(rows)
    os.link(rows, tmp_path / "hard.jsonl")
    monkeypatch.chdir(tmp_path)
    for output in (rows, "rows.jsonl", "./sub/../rows.jsonl", tmp_path / "link.jsonl", "hard.jsonl"):
        result = run_cli(capsys, "predict", checkpoints["classification"], "--input", rows, "--output", output)
        assert_one_line_error(result, "is the input file", "would replace the rows")
    assert rows.read_text() == before
