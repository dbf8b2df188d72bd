"""The training loop's parts, each on its own: the budget clock, one optimizer step (accumulation and the NaN
policy), evaluation and the best checkpoint. The whole loop is tested through real runs in test_train.py."""

import contextlib
import copy
import json

import numpy as np
import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.model import GPT, preset
from gptlab.tokenizer import byte_tokenizer
from gptlab.train.checkpointer import Checkpointer
from gptlab.train.clock import BUDGET_MARKS, Clock
from gptlab.train.config import TrainConfig
from gptlab.train.distributed import Runtime
from gptlab.train.objective import NextTokenPrediction, evaluate
from gptlab.train.optim import lr_at, lr_at_time
from gptlab.train.prepare import Setup
from gptlab.train.step import OptimizerStep

CPU = Runtime(0, 1, torch.device("cpu"))
SEQ = 8


class FakeTime:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tiny_run(tmp_path, **settings):
    """A tiny model and next-token objective over random bytes, with the settings a step needs."""
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=257, n_ctx=SEQ))
    tokens = np.random.default_rng(0).integers(0, 256, 2000).astype(np.uint16)
    objective = NextTokenPrediction(tokens[:1500], tokens[1500:], SEQ, 0, 4, byte_tokenizer().token_bytes())
    config = TrainConfig(data=["x"], out=str(tmp_path), lr=1e-2, batch_size=4, precision="fp32", **settings)
    return config, model, objective


def optimizer_step(config, model, objective, micro):
    """Plain SGD: its update is the gradient itself, so equal steps mean equal gradients."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    return OptimizerStep(model, model, optimizer, objective, CPU, config, micro)


def test_without_a_time_budget_the_clock_counts_steps_and_follows_the_step_schedule():
    config = TrainConfig(data=["x"], lr=1e-3, max_steps=5, warmup_steps=2)
    clock = Clock(config, 0, 0.0, now=FakeTime())
    lrs = []
    while not clock.done:
        lrs.append(clock.lr())
        clock.tick()
        assert not clock.at_mark and clock.progress == 0
    assert clock.step == 5
    assert lrs == [lr_at(step, config, 1e-3) for step in range(5)]


def test_under_a_time_budget_the_clock_ends_the_run_marks_each_fifth_and_decays_over_the_time():
    config = TrainConfig(data=["x"], lr=1e-3, max_minutes=1.0, max_steps=10**12, warmup_steps=0)
    time = FakeTime()
    agreed = []
    clock = Clock(config, 0, 0.0, agree=lambda seconds: agreed.append(seconds) or seconds, now=time)
    marks, lrs = [], []
    while not clock.done:
        lrs.append((clock.step, clock.progress, clock.lr()))
        time.now += 5.0  # each step takes 5 s of the 60 s budget
        clock.tick()
        if clock.at_mark:
            marks.append(clock.step)
    assert clock.step == 12 and agreed[-1] == pytest.approx(60.0)  # every process acts on the agreed time
    assert marks == [3, 5, 8, 10, 12][: BUDGET_MARKS]  # 12 s, 24 s, 36 s, 48 s, 60 s
    assert all(lr == lr_at_time(step, progress, config, 1e-3) for step, progress, lr in lrs)
    assert lrs[-1][2] < 0.15 * 1e-3  # near the floor at the end of the time, whatever the step count


def test_a_resumed_clock_goes_on_from_the_time_already_spent():
    config = TrainConfig(data=["x"], lr=1e-3, max_minutes=1.0, max_steps=10**12)
    time = FakeTime()
    clock = Clock(config, 7, 30.0, now=time)
    assert clock.progress == pytest.approx(0.5) and clock.elapsed() == pytest.approx(30.0)
    time.now += 5.0
    clock.tick()
    assert clock.step == 8 and not clock.at_mark  # 35 s: still the third fifth, where the first run stopped
    time.now += 25.0
    clock.tick()
    assert clock.done and clock.at_mark


def test_gradient_accumulation_over_micro_batches_takes_the_same_step_as_one_batch(tmp_path):
    config, model, objective = tiny_run(tmp_path)
    other, other_objective = copy.deepcopy(model), copy.deepcopy(objective)
    whole = optimizer_step(config, model, objective, micro=4)(0, 1e-2, 4)
    accumulated = optimizer_step(config, other, other_objective, micro=1)(0, 1e-2, 4)
    assert accumulated == pytest.approx(whole, rel=1e-5)
    for a, b in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert objective.state_dict() == other_objective.state_dict()  # both drew the same four windows


class PoisonedLoss(NextTokenPrediction):
    """The objective's loss, made NaN while `poisoned`."""

    poisoned = True

    def loss(self, *args, **kwargs):
        loss = super().loss(*args, **kwargs)
        return loss * float("nan") if self.poisoned else loss


def poisoned_run(tmp_path, on_nan):
    config, model, objective = tiny_run(tmp_path, on_nan=on_nan)
    objective = PoisonedLoss(objective.train, objective.val, SEQ, 0, 4, objective.token_bytes)
    return config, model, objective


def test_a_non_finite_loss_stops_the_run_without_an_update_and_names_the_last_good_checkpoint(tmp_path):
    config, model, objective = poisoned_run(tmp_path, "stop")
    before = copy.deepcopy(model.state_dict())
    (tmp_path / "checkpoints" / "step_0000002").mkdir(parents=True)
    step = optimizer_step(config, model, objective, micro=2)
    with pytest.raises(GptlabError, match=r"loss became nan at step 3 \(lr 0.01\); stopped without saving; "
                                          r"the last good checkpoint is .*step_0000002") as error:
        step(2, 1e-2, 4)
    assert "--" not in str(error.value)  # a library message names settings, not flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_non_finite_loss_under_on_nan_skip_drops_that_update_only(tmp_path, capsys):
    config, model, objective = poisoned_run(tmp_path, "skip")
    before = copy.deepcopy(model.state_dict())
    step = optimizer_step(config, model, objective, micro=4)
    assert np.isnan(step(0, 1e-2, 4))
    assert "non-finite loss at step 1; skipping the update" in capsys.readouterr().err
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    objective.poisoned = False
    assert np.isfinite(step(1, 1e-2, 4))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_evaluation_returns_the_model_to_training_and_samples_only_with_validation_data(tmp_path):
    config, model, objective = tiny_run(tmp_path)
    sampled = []
    val, samples = evaluate(model, objective, contextlib.nullcontext, CPU.device, 2, lambda m: sampled.append(m.training) or "text")
    assert set(val) == {"val_loss", "val_bpb"} and samples == ["text"]
    assert sampled == [False] and model.training  # sampled in eval mode, handed back in training mode
    objective.val_starts = None  # no validation data
    assert evaluate(model, objective, contextlib.nullcontext, CPU.device, 2, lambda m: "text") == ({}, [])


def test_the_best_checkpoint_is_replaced_only_when_validation_improves_by_the_objectives_rule(tmp_path):
    config, model, objective = tiny_run(tmp_path)
    objective.best = ("val_acc", "max")
    setup = Setup(config, model, byte_tokenizer(), objective, "tiny", "tiny")
    saves = Checkpointer(setup, torch.optim.AdamW(model.parameters()), CPU, best=None)

    def best_step() -> int:
        return json.loads((tmp_path / "best" / "config.json").read_text())["training"]["step"]

    saves.keep_best(1, {"val_loss": 2.0, "val_acc": 0.5})
    assert best_step() == 1 and saves.best == 0.5
    saves.keep_best(2, {"val_loss": 1.0, "val_acc": 0.4})  # lower loss, but the rule is accuracy
    assert best_step() == 1 and saves.best == 0.5
    saves.keep_best(3, {"val_loss": 1.5, "val_acc": 0.7})
    assert best_step() == 3 and saves.best == 0.7
    saves.keep_best(4, {})  # no validation data: nothing to judge by
    assert best_step() == 3
