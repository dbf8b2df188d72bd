"""The one training loop (`run_loop`), a short coordinator of named parts, and `run`, which sets a run up for it.

A run is a `prepare` function that builds the model, tokenizer and `Objective` (train.prepare), handed to
`run`: pretraining here, fine-tuning in gptlab.finetune. The parts: resume (restore), step (one optimizer
step), clock (the budget and the schedule over it), objective.evaluate, checkpointer (periodic, best, final)
and report (bar, metrics, plots).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab import threads
from gptlab.device import keep_freed_memory
from gptlab.errors import Interrupted
from gptlab.train import distributed, run_dir
from gptlab.train.checkpointer import Checkpointer
from gptlab.train.checkpointing import Resumed
from gptlab.train.clock import Clock
from gptlab.train.config import TrainConfig
from gptlab.train.fingerprint import check_same_data, fingerprint
from gptlab.train.objective import evaluate
from gptlab.train.optim import batch_size_at, build_optimizer
from gptlab.train.prepare import Prepare, Setup, prepare_pretraining
from gptlab.train.report import Report
from gptlab.train.resume import check_resumable, find_resumed, restore, schedule_change
from gptlab.train.step import OptimizerStep


@dataclass
class TrainResult:
    out: Path
    final: Path
    step: int
    val: dict[str, float]
    """The last validation metrics (val_loss, val_bpb for language modelling)."""
    samples: list[str]

    @property
    def val_loss(self) -> float | None:
        return self.val.get("val_loss")

    @property
    def val_bpb(self) -> float | None:
        return self.val.get("val_bpb")


def train(config: TrainConfig) -> TrainResult:
    """Pretrain, or fine-tune as a language model, on `config.data`."""
    return run(config, prepare_pretraining)


def run(config: TrainConfig, prepare: Prepare) -> TrainResult:
    """Run what `prepare` sets up in `config.out`, which no other run may use meanwhile.

    The first SIGINT or SIGTERM ends the run after the current step with a checkpoint saved
    (raising `Interrupted`); a second one quits at once.
    """
    runtime = distributed.start(config.device)
    try:
        with run_dir.locked(Path(config.out)) if runtime.is_main else contextlib.nullcontext():
            with run_dir.stop_on_signal() as stop:
                config, resumed = find_resumed(config, runtime)
                data = fingerprint(config.inputs())
                if resumed:  # before the data is read and tokenised
                    check_same_data(resumed.state.get("data"), data, config.out)
                threads.use_threads(config.threads)
                torch.manual_seed(config.seed)  # weights drawn in `prepare`, then dropout; a resume restores its RNG
                setup = dataclasses.replace(prepare(config, runtime, resumed), data=data)
                if resumed:
                    check_resumable(setup.config, resumed)
                    if runtime.is_main:
                        print(f"resuming {config.out} from step {resumed.state['step']} ({resumed.path.name})", file=sys.stderr)
                        if warning := schedule_change(setup.config, resumed):
                            print(warning, file=sys.stderr)
                return run_loop(setup, runtime, stop, resumed)
    finally:
        runtime.shutdown()


def run_loop(setup: Setup, runtime: distributed.Runtime, stop: run_dir.StopRequest, resumed: Resumed | None) -> TrainResult:
    """The one training loop: every objective gets the same schedule, checkpoints, resume and scale-out."""
    config, model, objective, device = setup.config, setup.model, setup.objective, runtime.device
    out = Path(config.out)
    model.to(device).train()
    if device.type == "cpu":
        keep_freed_memory()
    model.activation_checkpointing = config.activation_checkpointing
    micro = distributed.micro_batch(config.batch_size, config.micro_batch_size, runtime.world_size)
    wrapped = distributed.wrap(model, runtime, config.distributed)
    optimizer = build_optimizer(model, config, config.lr)
    step, best = restore(resumed, model, optimizer, objective, runtime) if resumed else (0, None)
    one_step = OptimizerStep(model, wrapped, optimizer, objective, runtime, config, micro)
    clock = Clock(config, step, resumed.state.get("elapsed", 0.0) if resumed else 0.0, runtime.mean)
    report = Report(setup, runtime, clock, micro, one_step.bf16)
    saves = Checkpointer(setup, optimizer, runtime, best)
    val: dict[str, float] = {}
    samples: list[str] = []
    while not clock.done:
        lr, batch = clock.lr(), batch_size_at(clock.step, config, micro * runtime.world_size)
        loss = one_step(clock.step, lr, batch)
        clock.tick()
        report.step(clock, loss, lr, batch, objective.epoch)
        if clock.step % config.eval_every == 0 or clock.done or clock.at_mark:
            val, samples = evaluate(model, objective, one_step.autocast, device, micro, setup.sample)
            saves.keep_best(clock.step, val)
            report.validation(clock.step, val, samples)
        stopping = runtime.any(bool(stop)) and not clock.done
        if clock.step % config.save_every == 0 or clock.done or clock.at_mark or stopping:
            saved = saves.save(clock.step, clock.elapsed())
            report.restart_window()
            if stopping:
                report.close()
                signum = stop.signum or signal.SIGTERM
                raise Interrupted(f"stopped by {signal.Signals(signum).name} at step {clock.step}; saved {saved or out}", signum)
    report.close()
    final = saves.final(clock.step, val)
    runtime.barrier()
    return TrainResult(out, final, clock.step, val, samples)
