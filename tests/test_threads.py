"""The CPU thread count follows the machine's load unless fixed, and a run that slows down says so once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import torch

import gptlab.train
from gptlab import threads
from gptlab.threads import LoadReading, SlowdownWatch, ThreadGovernor
from gptlab.train import build_config


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    threads.use_threads(None)


class FakeMachine:
    """Load readings of a machine with `cores` cores where other programs take `other` cores' worth."""

    def __init__(self):
        self.now, self.busy, self.own, self.other = 0.0, 0.0, 0.0, 0.0

    def advance(self, seconds: float, own_cores: float = 1.0) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + self.other) * seconds

    def read(self) -> LoadReading:
        return LoadReading(self.busy, self.own, self.now)


def governed(machine: FakeMachine, most: int = 4) -> ThreadGovernor:
    torch.set_num_threads(most)
    gov = ThreadGovernor(read=machine.read, clock=lambda: machine.now)
    gov.cores = most
    return gov


def run_for(gov: ThreadGovernor, machine: FakeMachine, seconds: float, step: float = 0.25) -> list[int]:
    """Ticks every `step` seconds; the thread count after each."""
    seen = []
    for _ in range(round(seconds / step)):
        machine.advance(step)
        gov.tick()
        seen.append(torch.get_num_threads())
    return seen


def test_fewer_threads_at_once_when_others_load_the_cores_and_more_after_two_quiet_readings():
    machine = FakeMachine()
    gov = governed(machine, most=4)
    assert run_for(gov, machine, 3)[-1] == 4  # quiet: PyTorch's own count
    machine.other = 2.0
    assert run_for(gov, machine, 1.25)[-1] == 2  # one reading is enough to give up two cores
    assert gov.other_load == pytest.approx(2.0)
    machine.other = 0.3  # under half a core: still free
    seen = run_for(gov, machine, 3)
    assert seen[-1] == 4 and seen[:4] == [2, 2, 2, 2]  # the first quiet reading alone does not grow the count
    machine.other = 9.0
    assert run_for(gov, machine, 1.25)[-1] == 1  # never below one thread


def test_the_count_never_exceeds_pytorchs_own_choice():
    machine = FakeMachine()
    gov = governed(machine, most=2)
    gov.cores = 8  # more logical cores than PyTorch uses (hyper-threads)
    machine.other = 3.0
    assert run_for(gov, machine, 3)[-1] == 2


def test_a_fixed_count_is_kept_whatever_the_load():
    machine = FakeMachine()
    gov = governed(machine, most=4)
    gov.fix(3)
    machine.other = 3.0
    assert set(run_for(gov, machine, 3)) == {3}
    with pytest.raises(ValueError):
        gov.fix(0)


def test_a_count_the_caller_sets_itself_wins():
    machine = FakeMachine()
    gov = governed(machine, most=4)
    run_for(gov, machine, 1)
    torch.set_num_threads(3)
    machine.other = 3.0
    assert set(run_for(gov, machine, 3)) == {3}
    assert not gov.adaptive


def test_omp_num_threads_fixes_the_count(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    gov = ThreadGovernor()
    assert not gov.adaptive and gov.fixed == 1


def test_the_count_is_applied_in_the_thread_that_computes():
    """PyTorch keeps the count per thread: the server's engine ticks in a thread of its own."""
    machine = FakeMachine()
    gov = governed(machine, most=2)
    gov.fix(1)
    seen = []

    def worker():
        torch.set_num_threads(2)  # what this thread had before gptlab's first tick in it
        gov.tick()
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1]


def test_a_busy_core_is_measured_and_its_thread_given_up_then_taken_back():
    """A real CPU hog on this machine: the governor measures about one more core of other programs' load
    while it runs and keeps the count the measured load allows. (On a machine already busy on every core,
    that load is the one it must follow.)"""
    gov = ThreadGovernor(interval=0.5)

    def settle(condition, hang_guard: float = 120.0) -> None:
        deadline = time.monotonic() + hang_guard
        while not condition():
            assert time.monotonic() < deadline, f"other load {gov.other_load}, target {gov.target}"
            time.sleep(0.1)
            gov.tick()

    settle(lambda: gov.other_load is not None)
    before = gov.other_load
    if before > gov.cores - 1.2:  # no core is free for a hog: then the load already there is what to follow
        settle(lambda: gov.target == gov.allowed(gov.other_load))
        assert torch.get_num_threads() == gov.target < gov.most or gov.most == 1
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        settle(lambda: gov.other_load > before + 0.7)
        settle(lambda: gov.target == gov.allowed(gov.other_load))
        busy = gov.other_load
        assert torch.get_num_threads() == gov.target < gov.most or gov.allowed(busy) == gov.most
    finally:
        hog.kill()
        hog.wait()
    settle(lambda: gov.other_load < busy - 0.7)
    settle(lambda: gov.target == gov.allowed(gov.other_load))
    assert torch.get_num_threads() == gov.target


def test_slowdown_watch_warns_once_after_two_slow_windows():
    said = []
    watch = SlowdownWatch(said.append)
    for rate in [900, 1000, 950, 400, 980, 300, 290, 280, 100]:
        watch.observe(rate)
    assert len(said) == 1, said
    assert "290 tokens/s from 1,000 earlier" in said[0]


def test_a_training_run_that_slows_down_says_so_once(tmp_path, corpus, monkeypatch, capsys):
    """Halfway through, each step takes 50 ms longer (as when another program takes the cores)."""
    from gptlab.train import trainer

    steps = []
    real_tick = threads.tick

    def slow_tick(device):
        steps.append(1)
        if len(steps) > 20:
            time.sleep(0.05)
        real_tick(device)

    monkeypatch.setattr(trainer.threads, "tick", slow_tick)
    gptlab.train.train(build_config(None, {
        "data": [str(corpus)], "out": str(tmp_path / "run"), "max_steps": 40, "model": "tiny", "tokenizer": "byte",
        "seq_len": 16, "batch_size": 2, "sample_tokens": 0, "log_every": 2, "eval_every": 1000, "threads": 1,
    }))
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "throughput fell" in line]
    assert len(warnings) == 1, err
    assert "tokens/s" in warnings[0] and "fixed at 1" in warnings[0]


def test_the_engine_and_the_scorer_apply_the_count_in_their_own_thread(small_tokenizer):
    """The server's engine runs in a thread of its own: it takes the count at its steps, as eval's scorer does."""
    from gptlab.language_model import LanguageModel
    from gptlab.engine import Engine
    from gptlab.eval.scoring import score_tokens
    from gptlab.generation.params import SamplingParams
    from gptlab.model import GPT, preset

    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size, n_ctx=32))
    threads.use_threads(1)
    seen = {}

    def worker():
        torch.set_num_threads(2)  # what a fresh thread may hold before gptlab computes in it
        Engine(model, small_tokenizer, max_batch=1).generate([[1, 2, 3]], SamplingParams(max_new_tokens=2))
        seen["engine"] = torch.get_num_threads()
        torch.set_num_threads(2)
        score_tokens(LanguageModel(model, small_tokenizer), [([1, 2], [3])], batch_size=1)
        seen["scorer"] = torch.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"engine": 1, "scorer": 1}


@pytest.mark.parametrize("verb", ["generate", "serve", "eval", "quickstart"])
def test_threads_option_of_each_verb_is_checked(capsys, verb, tmp_path):
    from helpers import assert_one_line_error, run_cli

    where = [] if verb == "quickstart" else [tmp_path]
    assert_one_line_error(run_cli(capsys, verb, *where, "--threads", "0"), "--threads", "at least 1")
