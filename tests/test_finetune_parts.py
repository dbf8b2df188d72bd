"""GPT-1 fine-tuning pieces: input transformations, the task head, special tokens, head-only freezing,
the objective, checkpoints, predictions and Hugging Face heads (logit-exact against transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli
from helpers import randomize as hf_randomize

import gptlab
from gptlab.cli.main import main
from gptlab.errors import GptlabError
from gptlab.finetune import (
    TaskModel, TaskObjective, TaskSpec, add_special_tokens, encode, freeze_backbone, label_set, predict, read_rows,
    split_holdout,
)
from gptlab.finetune.objective import collate, run_batch
from gptlab.finetune.tasks import Row
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS, byte_tokenizer
from gptlab.train.config import TrainConfig
from gptlab.train.optim import build_optimizer

S, D, E, PAD = 257, 258, 259, 256  # the byte tokenizer's <|endoftext|> is 256; GPT-1's tokens come next


@pytest.fixture(scope="module")
def base():
    """A tiny pre-LN GPT with GPT-1's tokens added, and its tokenizer."""
    torch.manual_seed(0)
    tokenizer = byte_tokenizer()
    model = gptlab.GPT(gptlab.preset("tiny", n_layer=2, d_model=32, n_head=2, vocab_size=tokenizer.vocab_size))
    return add_special_tokens(model, tokenizer, GPT1_SPECIAL_TOKENS)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text)


def rows(*dicts) -> list[Row]:
    return [Row(f"mem:{n}", d) for n, d in enumerate(dicts, 1)]


def task_model(base, type: str, labels, seed: int = 0, **spec_options) -> TaskModel:
    model, tokenizer = base
    spec = TaskSpec.create(type, labels, tokenizer, **spec_options)
    return TaskModel.from_backbone(model, spec, seed=seed).eval()


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# --- input transformations ---------------------------------------------------------------------


def test_each_task_lays_out_tokens_as_gpt1_does(base):
    _, tok = base
    cases = {
        "classification": ({"text": "hi", "label": "pos"}, [[S, *ids(tok, "hi"), E]]),
        "entailment": (
            {"premise": "ab", "hypothesis": "c", "label": "yes"}, [[S, *ids(tok, "ab"), D, *ids(tok, "c"), E]]
        ),
        "similarity": (
            {"text_a": "ab", "text_b": "c", "label": 1},
            [[S, *ids(tok, "ab"), D, *ids(tok, "c"), E], [S, *ids(tok, "c"), D, *ids(tok, "ab"), E]],
        ),
        "multiple_choice": (
            {"context": "q?", "choices": ["x", "yz"], "label": "yz"},
            [[S, *ids(tok, "q?"), D, *ids(tok, "x"), E], [S, *ids(tok, "q?"), D, *ids(tok, "yz"), E]],
        ),
    }
    for task, (row, expected) in cases.items():
        labels = [] if task == "multiple_choice" else [row["label"], "other" if isinstance(row["label"], str) else 0]
        spec = TaskSpec.create(task, sorted(labels), tok)
        [example] = encode(spec, tok, rows(row), n_ctx=64).examples
        assert [list(s) for s in example.sequences] == expected, task
        assert example.label == (1 if task == "multiple_choice" else spec.labels.index(row["label"]))


def test_long_inputs_keep_the_special_tokens_and_lose_the_left_of_the_longest_part(base):
    _, tok = base
    spec = TaskSpec.create("entailment", ["no", "yes"], tok)
    premise, hypothesis = "p" * 30 + "END", "h" * 10
    data = encode(spec, tok, rows({"premise": premise, "hypothesis": hypothesis, "label": "no"}), n_ctx=24)
    [seq] = data.examples[0].sequences
    assert data.truncated == 1 and len(seq) == 24
    # 21 text tokens: the premise is cut to 11 (ending in END), the hypothesis to 10, from their left ends
    assert seq == [S, *ids(tok, premise)[-11:], D, *ids(tok, hypothesis), E]
    sim = TaskSpec.create("similarity", [0, 1], tok)
    a, b = encode(sim, tok, rows({"text_a": "a" * 40, "text_b": "b" * 12, "label": 0}), 24).examples[0].sequences
    assert a == [S, *ids(tok, "a" * 10), D, *ids(tok, "b" * 11), E] and b == [S, *ids(tok, "b" * 11), D, *ids(tok, "a" * 10), E]


def test_labels_are_sorted_from_training_and_unknown_ones_refused(tmp_path, base):
    _, tok = base
    train = read_rows(write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": l} for t, l in
                                                                 [("a", "pos"), ("b", "neg"), ("c", "pos")]]))
    assert label_set("classification", train) == ["neg", "pos"]
    spec = TaskSpec.create("classification", label_set("classification", train), tok)
    assert [e.label for e in encode(spec, tok, train, 64).examples] == [1, 0, 1]
    valid = read_rows(write_jsonl(tmp_path / "valid.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}]))
    with pytest.raises(GptlabError, match=r"valid\.jsonl:2: label 'meh' is not one of the training labels \('neg', 'pos'\)"):
        encode(spec, tok, valid, 64)
    assert [e.label for e in encode(spec, tok, valid, 64, labelled=False).examples] == [None, None]
    assert label_set("multiple_choice", train) == []


@pytest.mark.parametrize(
    "line, task, message",
    [
        ('{"text": "a"}', "classification", r"bad\.jsonl:2: missing field 'label'"),
        ('{"premise": "a", "label": 1}', "entailment", r"bad\.jsonl:2: missing field 'hypothesis'"),
        ('{"text": 7, "label": 1}', "classification", r"bad\.jsonl:2: field 'text' must be a string, got int"),
        ('{"text": "a", "label": [1]}', "classification", r"bad\.jsonl:2: field 'label' must be a string or an integer"),
        ('{"context": "a", "choices": "x", "label": 0}', "multiple_choice", r"bad\.jsonl:2: field 'choices' must be"),
        ('{"context": "a", "choices": ["x"], "label": 3}', "multiple_choice", r"bad\.jsonl:2: label 3 is neither"),
        ('{"text": "a", "label": "x"}', "classification", r"labels mix strings \(.*bad\.jsonl:2\) and integers"),
        ('["text"]', "classification", r"bad\.jsonl:2: each line must be a JSON object"),
        ('{"text": ', "classification", r"bad\.jsonl:2: not valid JSON"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_file_and_line(tmp_path, base, line, task, message):
    _, tok = base
    first = {"classification": '{"text": "b", "label": 0}', "entailment": '{"premise": "a", "hypothesis": "b", "label": 0}',
             "multiple_choice": '{"context": "a", "choices": ["x"], "label": 0}'}[task]
    with pytest.raises(GptlabError, match=message) as error:
        data = read_rows(write_jsonl(tmp_path / "bad.jsonl", [first, line]))
        encode(TaskSpec.create(task, label_set(task, data), tok), tok, data, 64)
    assert "\n" not in str(error.value)


def test_holdout_is_seeded_disjoint_and_complete():
    data = rows(*({"text": str(i), "label": i % 2} for i in range(50)))
    train, held = split_holdout(data, 0.1, seed=3)
    assert len(held) == 5 and sorted(train + held, key=data.index) == data
    assert (train, held) == split_holdout(data, 0.1, seed=3) and held != split_holdout(data, 0.1, seed=4)[1]
    with pytest.raises(GptlabError, match="cannot hold out"):
        split_holdout(data[:1])


# --- the model -----------------------------------------------------------------------------------


def test_special_tokens_grow_the_embedding_and_tokenizer_once(base):
    torch.manual_seed(0)
    tokenizer = byte_tokenizer()
    model = gptlab.GPT(gptlab.preset("tiny", n_layer=2, d_model=64, n_head=2, vocab_size=tokenizer.vocab_size))
    grown, tok = add_special_tokens(model, tokenizer, GPT1_SPECIAL_TOKENS, seed=1)
    assert [tok.special_id(n) for n in GPT1_SPECIAL_TOKENS] == [S, D, E] and tok.vocab_size == 260
    assert grown.config.vocab_size == 260 and grown.lm_head.weight is grown.wte.weight
    assert torch.equal(grown.wte.weight[:257], model.wte.weight)
    new = grown.wte.weight[257:]
    assert abs(new.std().item() - model.config.init_std) < 0.3 * model.config.init_std and abs(new.mean()) < 0.01
    assert torch.equal(new, add_special_tokens(model, tokenizer, GPT1_SPECIAL_TOKENS, seed=1)[0].wte.weight[257:])
    again, tok_again = add_special_tokens(grown, tok, [GPT1_SPECIAL_TOKENS[2]])
    assert tok_again.special_tokens == tok.special_tokens and torch.equal(again.wte.weight, grown.wte.weight)
    idx = torch.randint(0, 257, (2, 9))
    assert torch.allclose(grown.eval()(idx)[..., :257], model.eval()(idx), atol=1e-6)


def test_right_padding_leaves_the_outputs_unchanged(base):
    model = task_model(base, "classification", ["a", "b", "c"])
    data = encode(model.spec, base[1], rows({"text": "x" * 20, "label": "a"}, {"text": "y", "label": "b"}), 64)
    _, together = model(collate(data.examples, model.spec).idx, extract=torch.tensor([21, 2]))
    alone = [model(collate([e], model.spec).idx, extract=torch.tensor([len(e.sequences[0]) - 1]))[1] for e in data.examples]
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-6, rtol=0)


def test_similarity_is_symmetric_in_its_two_texts(base):
    model = task_model(base, "similarity", [0, 1, 2])
    tok = base[1]
    pair = encode(model.spec, tok, rows({"text_a": "a cat", "text_b": "dogs bark", "label": 0}), 64).examples
    swapped = encode(model.spec, tok, rows({"text_a": "dogs bark", "text_b": "a cat", "label": 0}), 64).examples
    logits = [run_batch(model, collate(x, model.spec), model.spec, lm=False)[0] for x in (pair, swapped)]
    assert logits[0].shape == (1, 3) and torch.equal(logits[0], logits[1])


def test_multiple_choice_scores_each_choice_and_pads_ragged_examples(base):
    model = task_model(base, "multiple_choice", [])
    tok = base[1]
    data = encode(model.spec, tok, rows({"context": "c", "choices": ["a", "b", "c"], "label": 2},
                                        {"context": "d", "choices": ["e", "f"], "label": 0}), 64)
    batch = collate(data.examples, model.spec)
    logits, lm_loss = run_batch(model, batch, model.spec, lm=True)
    _, head = model(batch.idx, extract=batch.lengths - 1)
    assert head.shape == (5, 1) and logits.shape == (2, 3) and lm_loss.item() > 0
    assert torch.equal(logits[0], head[:3, 0]) and torch.equal(logits[1, :2], head[3:, 0]) and logits[1, 2] == -float("inf")


def test_task_checkpoint_round_trips_and_still_generates(tmp_path, base):
    model = task_model(base, "entailment", ["contradiction", "entailment", "neutral"])
    gptlab.save(tmp_path / "ckpt", model, base[1])
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["task"] == model.spec.to_dict() and config["task"]["labels"] == ["contradiction", "entailment", "neutral"]
    lm = gptlab.load(tmp_path / "ckpt")
    assert isinstance(lm.model, TaskModel) and lm.model.spec == model.spec
    idx = torch.randint(0, 260, (3, 12))
    extract = torch.tensor([11, 5, 0])
    for ours, theirs in zip(lm.model(idx, extract=extract), model(idx, extract=extract)):
        assert torch.equal(ours, theirs)
    assert torch.equal(lm.model(idx), model(idx))
    assert isinstance(lm.generate("ab", max_new_tokens=3, temperature=0), str)


def test_a_bad_task_spec_in_a_checkpoint_is_one_line(tmp_path, base):
    gptlab.save(tmp_path / "ckpt", task_model(base, "classification", [0, 1]), base[1])
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    config["task"]["type"] = "regression"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GptlabError, match=r"ckpt: task type 'regression' is not one of classification"):
        gptlab.load(tmp_path / "ckpt")


# --- training pieces ---------------------------------------------------------------------------


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_head_only_training_leaves_the_backbone_bit_identical(base):
    model = task_model(base, "classification", ["neg", "pos"]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    freeze_backbone(model)
    data = encode(model.spec, base[1], rows(*({"text": "ab" * i, "label": ["neg", "pos"][i % 2]} for i in range(8))), 64)
    objective = TaskObjective(data, None, model.spec, seed=0)
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1), lr=1e-2)
    for _ in range(3):
        objective.loss(model, objective.sample(4), no_autocast, torch.device("cpu")).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"head.weight", "wte.weight", "lm_head.weight"}  # lm_head is wte (tied)
    rows_changed = (after["wte.weight"] != before["wte.weight"]).any(-1).nonzero().flatten().tolist()
    assert rows_changed == [S, D, E]  # $ is in no classification input, but the tied LM head scores it


def test_objective_adds_the_lm_loss_and_validates_over_every_example(base):
    tok = base[1]
    train = rows(*({"context": "q" * i, "choices": ["a", "bb", "c"], "label": i % 3} for i in range(1, 7)))
    spec = TaskSpec.create("multiple_choice", [], tok)
    data = encode(spec, tok, train, 64)
    model = TaskModel.from_backbone(base[0], spec).eval()
    losses = {}
    for coef in (0.0, 0.5):
        objective = TaskObjective(data, data, TaskSpec.create("multiple_choice", [], tok, lm_coef=coef), seed=0)
        losses[coef] = objective.loss(model, np.arange(6), no_autocast, torch.device("cpu")).item()
    logits, lm_loss = run_batch(model, collate(data.examples, spec), spec, lm=True)
    task_loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2, 0, 1, 2, 0])).item()
    assert losses[0.0] == pytest.approx(task_loss, abs=1e-6)
    assert losses[0.5] == pytest.approx(task_loss + 0.5 * lm_loss.item(), abs=1e-6)
    metrics = objective.validate(model, no_autocast, torch.device("cpu"), batch=4)
    correct = (logits.argmax(-1) == torch.tensor([1, 2, 0, 1, 2, 0])).float().mean().item()
    assert metrics == {"val_loss": pytest.approx(task_loss, abs=1e-6), "val_acc": pytest.approx(correct)}
    assert objective.best == ("val_acc", "max")


def test_lm_loss_ignores_padding(base):
    model = task_model(base, "classification", [0, 1])
    data = encode(model.spec, base[1], rows({"text": "abcdef", "label": 0}, {"text": "x", "label": 1}), 64)
    _, padded = run_batch(model, collate(data.examples, model.spec), model.spec, lm=True)
    separate = [run_batch(model, collate([e], model.spec), model.spec, lm=True)[1] for e in data.examples]
    tokens = [len(e.sequences[0]) - 1 for e in data.examples]
    expected = sum(loss * n for loss, n in zip(separate, tokens)) / sum(tokens)
    torch.testing.assert_close(padded, expected, atol=1e-6, rtol=0)


def test_example_stream_is_a_permutation_per_epoch_and_resumes_exactly(base):
    data = encode(TaskSpec.create("classification", [0, 1], base[1]), base[1],
                  rows(*({"text": "a", "label": i % 2} for i in range(7))), 64)
    spec = TaskSpec.create("classification", [0, 1], base[1])
    first = TaskObjective(data, None, spec, seed=5)
    drawn = first.sample(10)
    assert sorted(drawn[:7]) == list(range(7)) and first.epoch == 1
    resumed = TaskObjective(data, None, spec, seed=5)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert np.array_equal(resumed.sample(9), first.sample(9))
    assert not np.array_equal(TaskObjective(data, None, spec, seed=6).sample(7), drawn[:7])


# --- predictions -------------------------------------------------------------------------------


def test_predict_gives_labels_and_probabilities(tmp_path, base):
    model = task_model(base, "classification", [3, 7])
    gptlab.save(tmp_path / "clf", model, base[1])
    out = predict(gptlab.load(tmp_path / "clf"), [{"text": "hello"}, {"text": "a much longer text"}], batch_size=1)
    assert [set(p) for p in out] == [{"label", "probabilities"}] * 2
    for p in out:
        assert set(p["probabilities"]) == {"3", "7"} and sum(p["probabilities"].values()) == pytest.approx(1)
        assert p["label"] == max((3, 7), key=lambda label: p["probabilities"][str(label)])
    gptlab.save(tmp_path / "lm", base[0], base[1])
    with pytest.raises(GptlabError, match="not a fine-tuned task model"):
        predict(gptlab.load(tmp_path / "lm"), [{"text": "x"}])


def test_predict_cli_writes_jsonl_atomically_or_to_stdout(tmp_path, base, capsys):
    gptlab.save(tmp_path / "mc", task_model(base, "multiple_choice", []), base[1])
    rows_file = write_jsonl(tmp_path / "in.jsonl", [{"context": "c", "choices": ["a", "b"]}, {"context": "d", "choices": ["e", "f", "g"]}])
    main(["predict", str(tmp_path / "mc"), "--input", str(rows_file), "--output", str(tmp_path / "out.jsonl"), "--device", "cpu"])
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [len(p["probabilities"]) for p in written] == [2, 3]
    assert all(sum(p["probabilities"]) == pytest.approx(1) for p in written)
    capsys.readouterr()
    main(["predict", str(tmp_path / "mc"), "--input", str(rows_file), "--device", "cpu"])
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == written
    write_jsonl(rows_file, [{"context": "c", "choices": []}])
    assert_one_line_error(run_cli(capsys, "predict", tmp_path / "mc", "--input", rows_file),
                          "in.jsonl:1: field 'choices' must be a non-empty list of strings")


# --- Hugging Face heads ------------------------------------------------------------------------

TOL = 1e-5


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    return hf_randomize(model, seed, scale=0.3)  # larger weights: class logits far apart


def padded_batch(tokenizer, spec, texts) -> tuple[torch.Tensor, torch.Tensor]:
    data = encode(spec, tokenizer, rows(*({"context": "why", "choices": t} if spec.type == "multiple_choice"
                                          else {"text": t} for t in texts)), 64, labelled=False)
    batch = collate(data.examples, spec)
    return batch.idx, batch.lengths - 1


def test_classification_head_exports_and_imports_logit_exact(tmp_path, base):
    import transformers

    from gptlab.checkpoint.hf import import_hf

    model = randomize(task_model(base, "classification", ["neg", "neutral", "pos"]))
    gptlab.save(tmp_path / "ours", model, base[1])
    idx, extract = padded_batch(base[1], model.spec, ["short", "a longer one", "x"])
    ours = model(idx, extract=extract)[1]
    main(["convert", str(tmp_path / "ours"), str(tmp_path / "hf"), "--to", "hf"])
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label == {0: "neg", 1: "neutral", 2: "pos"} and hf.config.pad_token_id == PAD
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours, atol=TOL, rtol=0)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "hf").pad_token == "<|endoftext|>"

    # a model made by transformers imports with the same logits
    config = {k: v for k, v in hf.config.to_dict().items() if k != "gptlab_task"}  # as if trained in transformers
    native = randomize(transformers.GPT2ForSequenceClassification(transformers.GPT2Config.from_dict(config)), seed=1)
    native.save_pretrained(tmp_path / "native")
    base[1].save(tmp_path / "native")
    import_hf(tmp_path / "native", tmp_path / "back")
    back = gptlab.load(tmp_path / "back").model
    assert back.spec.labels == ("neg", "neutral", "pos") and back.spec.type == "classification"
    with torch.no_grad():
        torch.testing.assert_close(back(idx, extract=extract)[1], native(idx).logits, atol=TOL, rtol=0)


def test_multiple_choice_head_exports_and_imports_logit_exact(tmp_path, base):
    import transformers

    from gptlab.checkpoint.hf import export_hf, import_hf

    model = randomize(task_model(base, "multiple_choice", []))
    gptlab.save(tmp_path / "ours", model, base[1])
    idx, extract = padded_batch(base[1], model.spec, [["yes", "no", "maybe so"]])
    lm_logits, scores = model(idx, extract=extract)
    export_hf(tmp_path / "ours", tmp_path / "hf")
    hf = transformers.GPT2DoubleHeadsModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        out = hf(idx[None], mc_token_ids=extract[None])
    torch.testing.assert_close(out.mc_logits[0], scores[:, 0], atol=TOL, rtol=0)
    torch.testing.assert_close(out.logits[0], lm_logits, atol=TOL, rtol=0)

    import_hf(tmp_path / "hf", tmp_path / "back")
    back = gptlab.load(tmp_path / "back").model
    assert back.spec == model.spec
    config = {k: v for k, v in hf.config.to_dict().items() if k != "gptlab_task"}
    native = randomize(transformers.GPT2DoubleHeadsModel(transformers.GPT2Config.from_dict(config)), seed=2)
    with torch.no_grad():
        native.multiple_choice_head.summary.bias.zero_()
    native.save_pretrained(tmp_path / "native")
    base[1].save(tmp_path / "native")
    import_hf(tmp_path / "native", tmp_path / "native_back")
    with torch.no_grad():
        expected = native(idx[None], mc_token_ids=extract[None]).mc_logits[0]
        torch.testing.assert_close(gptlab.load(tmp_path / "native_back").model(idx, extract=extract)[1][:, 0], expected,
                                   atol=TOL, rtol=0)
        native.multiple_choice_head.summary.bias.fill_(0.5)
    native.save_pretrained(tmp_path / "biased")
    base[1].save(tmp_path / "biased")
    with pytest.raises(GptlabError, match="summary.bias is not zero"):
        import_hf(tmp_path / "biased", tmp_path / "refused")


def test_heads_without_a_hugging_face_equivalent_are_refused(tmp_path, base):
    from gptlab.checkpoint.hf import export_hf

    gptlab.save(tmp_path / "sim", task_model(base, "similarity", [0, 1]), base[1])
    with pytest.raises(GptlabError, match="a similarity head on a GPT-2 model has no Hugging Face equivalent"):
        export_hf(tmp_path / "sim", tmp_path / "hf")
