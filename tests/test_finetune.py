"""GPT-1 fine-tuning through the one training loop: it learns each task type, resumes exactly, and keeps
a frozen backbone frozen."""

import json
import random
from pathlib import Path

import pytest
import torch
from helpers import assert_one_line_error, assert_same_weights, gptlab_cli, kill_at, losses, rewind, run_cli
from safetensors.torch import load_file

import gptlab
from gptlab.finetune import TaskObjective, TaskSpec, encode, read_rows
from gptlab.finetune.heads import add_special_tokens
from gptlab.model.heads import TaskModel
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS, byte_tokenizer

WORDS = "the a cat dog sat ran on under table chair quickly slowly red blue green small".split()
FAST = ["--lr", "1e-3", "--batch-size", "16", "--threads", "1", "--no-progress", "--log-every", "1"]


def finetune_cli(*args, **kwargs):
    return gptlab_cli("finetune", *args, **kwargs)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def timeless(rows: list[dict]) -> list[dict]:
    """Metrics rows without the throughput, which differs from run to run."""
    return [{k: v for k, v in r.items() if k != "items_per_s"} for r in rows]


def phrase(rng: random.Random, n: int = 4) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def marked(rng: random.Random, marker: str) -> str:
    words = phrase(rng, rng.randint(3, 6)).split()
    words.insert(rng.randrange(len(words) + 1), marker)
    return " ".join(words)


def row(task: str, rng: random.Random) -> dict:
    """A row whose label a small model can learn in a few epochs: a marker word decides it."""
    yes = rng.random() < 0.5
    marker = "good" if yes else "awful"
    if task == "classification":
        return {"text": marked(rng, marker), "label": "pos" if yes else "neg"}
    if task == "entailment":
        return {"premise": phrase(rng), "hypothesis": marked(rng, marker), "label": "entailment" if yes else "contradiction"}
    if task == "similarity":
        return {"text_a": marked(rng, marker), "text_b": phrase(rng), "label": int(yes)}
    choices = [marked(rng, "good"), marked(rng, "awful"), marked(rng, "awful")]
    rng.shuffle(choices)
    return {"context": phrase(rng), "choices": choices, "label": next(i for i, c in enumerate(choices) if "good" in c.split())}


def write_rows(path: Path, task: str, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(row(task, rng)) + "\n" for _ in range(n)))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A small pretrained-shaped GPT with the byte tokenizer (untrained: the tasks teach it all)."""
    path = tmp_path_factory.mktemp("base") / "gpt"
    torch.manual_seed(0)
    model = gptlab.GPT(gptlab.preset("tiny", n_layer=2, d_model=64, n_head=2, n_ctx=64, vocab_size=257))
    gptlab.save(path, model, byte_tokenizer())
    return path


@pytest.mark.parametrize("task", ["classification", "entailment", "similarity", "multiple_choice"])
def test_finetuning_learns_each_task_type(tmp_path, base, task):
    train = write_rows(tmp_path / "train.jsonl", task, 320, seed=1)
    valid = write_rows(tmp_path / "valid.jsonl", task, 100, seed=2)
    out = tmp_path / "run"
    result = finetune_cli(base, "--task", task, "--train", train, "--valid", valid, "--epochs", 4, "--out", out, *FAST)
    assert result.returncode == 0, result.stderr
    accuracy = [r["val_acc"] for r in metrics(out) if "val_acc" in r]
    assert len(accuracy) == 4  # once per epoch
    assert max(accuracy) >= 0.9, accuracy  # chance is 1/2 (1/3 for multiple choice)
    best = gptlab.load(out / "best")
    assert isinstance(best.model, TaskModel) and best.model.spec.type == task
    assert json.loads((out / "best" / "config.json").read_text())["training"]["val_acc"] == max(accuracy)
    predicted = gptlab_cli("predict", out / "best", "--input", valid)
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in valid.read_text().splitlines()]
    answers = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert sum(a["label"] == r["label"] for a, r in zip(answers, rows, strict=True)) / len(rows) == max(accuracy)


def test_the_auxiliary_lm_loss_is_weighted_by_lambda(base, tmp_path):
    train = read_rows(write_rows(tmp_path / "train.jsonl", "entailment", 8, seed=3))
    lm = gptlab.load(base)
    model, tokenizer = add_special_tokens(lm.model, lm.tokenizer, GPT1_SPECIAL_TOKENS)
    losses = {}
    for coef in (0.0, 0.5, 1.0):
        spec = TaskSpec.create("entailment", ["contradiction", "entailment"], tokenizer, clf_pdrop=0.0, lm_coef=coef)
        task_model = TaskModel.from_backbone(model, spec, seed=0).eval()
        objective = TaskObjective(encode(spec, tokenizer, train, 64), None, spec, seed=0)
        losses[coef] = objective.loss(task_model, objective.sample(8), lambda: torch.autocast("cpu", enabled=False), torch.device("cpu")).item()
    lm_term = losses[1.0] - losses[0.0]
    assert lm_term > 1.0  # an untrained model's LM loss is large
    assert losses[0.5] == pytest.approx(losses[0.0] + 0.5 * lm_term, rel=1e-5)


def test_head_only_training_leaves_the_backbone_bit_identical(tmp_path, base):
    train = write_rows(tmp_path / "train.jsonl", "classification", 64, seed=4)
    out = tmp_path / "run"
    result = finetune_cli(base, "--task", "classification", "--train", train, "--trainable", "head", "--epochs", 2,
                          "--out", out, *FAST)
    assert result.returncode == 0, result.stderr
    before, after = load_file(str(base / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    for key, tensor in before.items():
        if key == "wte.weight":
            assert torch.equal(after[key][: len(tensor)], tensor)  # every old row; the s/$/e rows are new
            assert not torch.equal(after[key][len(tensor):], gptlab.load(out / "checkpoints" / "step_0000004").model.wte.weight[len(tensor):])
        else:
            assert torch.equal(after[key], tensor), key
    assert "head.weight" in after


def test_sigkill_then_resume_of_a_fine_tune_is_bit_exact(tmp_path, base):
    train = write_rows(tmp_path / "train.jsonl", "multiple_choice", 160, seed=5)
    args = ["--task", "multiple_choice", "--train", train, "--max-steps", 40, "--save-every", 10, "--eval-every", 20, *FAST]
    reference = tmp_path / "reference"
    assert finetune_cli(base, *args, "--out", reference).returncode == 0
    out = tmp_path / "killed"
    kill_at(finetune_cli(base, *args, "--out", out, wait=False), out / "checkpoints" / "step_0000010")
    resumed = finetune_cli(base, *args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert timeless(metrics(out)) == timeless(metrics(reference))
    assert_same_weights(out / "final", reference / "final")


@pytest.mark.parametrize(
    "rows, args, message",
    [
        ([{"text": "a b"}] * 4, [], "label"),
        ([{"premise": "a", "label": "x"}, {"premise": "b", "label": "y"}] * 2, ["--task", "entailment"], "hypothesis"),
        ([{"text": "a", "label": "x"}] * 4, [], "two or more"),
        ([{"text": "a", "label": "x"}], ["--task", "ranking"], "task must be one of"),
    ],
)
def test_bad_fine_tuning_input_is_one_line(tmp_path, base, rows, args, message):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert_one_line_error(finetune_cli(base, "--train", train, "--out", tmp_path / "run", *args), message)


def test_an_unknown_label_at_predict_time_is_one_line(tmp_path, base):
    train = write_rows(tmp_path / "train.jsonl", "classification", 32, seed=6)
    out = tmp_path / "run"
    assert finetune_cli(base, "--task", "classification", "--train", train, "--max-steps", 2, "--out", out, *FAST).returncode == 0
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "a cat", "label": "maybe"}) + "\n")
    assert_one_line_error(gptlab_cli("predict", out / "final", "--input", rows), "maybe")


def test_a_fine_tune_records_its_base_and_no_progress_hides_only_the_bar(tmp_path, base):
    train = write_rows(tmp_path / "train.jsonl", "classification", 16, seed=7)
    out = tmp_path / "run"
    result = finetune_cli(base, "--train", train, "--max-steps", 1, "--out", out, *FAST, "--batch-size", 4)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"fine-tuning {base} for classification") and "step 1: val_loss" in result.stdout
    assert "%|" not in result.stderr
    recorded = json.loads((out / "train_config.json").read_text())
    base_config = json.loads((base / "config.json").read_text())["model"]
    assert recorded["checkpoint"] == str(base) and recorded["model"] is None  # no preset: the base is the model
    shape = ("n_layer", "n_head", "d_model", "n_ctx")
    assert [recorded["model_config"][k] for k in shape] == [base_config[k] for k in shape] == [2, 2, 64, 64]
    assert recorded["model_config"]["vocab_size"] == base_config["vocab_size"] + 3  # with GPT-1's s, $ and e


def test_a_fine_tune_resumes_with_its_own_steps_and_only_on_its_own_rows(tmp_path, base, capsys):
    train = write_rows(tmp_path / "train.jsonl", "classification", 32, seed=8)
    out = tmp_path / "run"
    args = ["--train", train, "--save-every", 2, "--eval-every", 100, "--out", out, *FAST, "--batch-size", 4]
    assert finetune_cli(base, *args, "--max-steps", 4).returncode == 0  # 3 epochs would be 24 steps
    rewind(out, 2)
    resumed = finetune_cli(base, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert max(losses(out)) == 4
    rewind(out, 2)
    train.write_text(train.read_text().replace('"pos"', '"tmp"').replace('"neg"', '"pos"').replace('"tmp"', '"neg"'))
    refused = run_cli(capsys, "finetune", base, *args, "--resume")  # refused before any work: in-process
    assert_one_line_error(refused, f"{train} (changed)")
    assert not (out / "final").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--task", "lm", "--trainable", "head"], "task lm"),
        (["--seq-len", "100000"], "seq_len 100000 is longer than the checkpoint's context n_ctx 64"),
        (["--task", "lm", "--seq-len", "100000"], "seq_len 100000 is longer than the checkpoint's context n_ctx 64"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--epochs", "inf"], "epochs must be a finite number"),
        (["--lm-coef", "nan"], "lm_coef must be a finite number"),
        (["--clf-pdrop", "-0.5"], "clf_pdrop must be in [0, 1)"),
        (["--warmup-fraction", "1"], "warmup_fraction must be in [0, 1)"),
        (["--weight-decay", "-1"], "weight_decay must be >= 0"),
        (["--batch-size", "-4"], "batch_size must be at least 1"),
    ],
)
def test_fine_tuning_settings_it_cannot_honour_are_refused_before_any_work(capsys, tmp_path, base, args, fragment):
    train = write_rows(tmp_path / "train.jsonl", "classification", 16, seed=9)
    if "lm" in args:
        train.write_text("a small text to continue training on.\n" * 20)
    out = tmp_path / "run"
    result = run_cli(capsys, "finetune", base, "--train", train, "--max-steps", 1, "--out", out, *FAST, *args)
    assert_one_line_error(result, fragment)
    assert not (out / "checkpoints").exists()
