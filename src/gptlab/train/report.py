"""What a run shows while it trains: the progress bar, metrics.jsonl (and TensorBoard), throughput with its
slowdown warning, validation lines, samples.txt and loss.png. Only the main process writes any of it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from gptlab import atomic, threads
from gptlab.train import distributed
from gptlab.train.clock import Clock
from gptlab.train.metrics import MetricsLog, plot_loss
from gptlab.train.optim import batch_size_at
from gptlab.train.prepare import Setup

REPLOT_SECONDS = 30.0
"""Least time between redraws of loss.png during a run: one costs ~0.1 s, the first ~1 s (matplotlib)."""


class Report:
    """Starts by recording the run's settings (train_config.json) and describing it in one line."""

    def __init__(self, setup: Setup, runtime: distributed.Runtime, clock: Clock, micro: int, bf16: bool) -> None:
        config = setup.config
        self.setup, self.runtime, self.out = setup, runtime, Path(config.out)
        self.log_every = config.log_every
        out = self.out
        tensorboard = out / "tensorboard" if config.tensorboard else None
        self.metrics = MetricsLog(out / "metrics.jsonl", clock.step, tensorboard) if runtime.is_main else None
        if runtime.is_main:  # the settings, and the shape of the model they train (for a fine-tune, the base's)
            recorded = {**config.to_dict(), "model_config": setup.model.config.to_dict()}
            atomic.write_text(out / "train_config.json", json.dumps(recorded, indent=2) + "\n")
            tqdm.write(f"{setup.summary}; {runtime.world_size} process(es) on {runtime.device}, {'bf16 autocast' if bf16 else 'fp32'}")
        show = config.progress and runtime.is_main
        if clock.budget:  # the bar counts seconds of the budget, so its ETA is the end of the run
            self.bar = tqdm(total=round(clock.budget), initial=round(clock.spent), disable=not show, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=config.max_steps, initial=clock.step, disable=not show, unit="step", dynamic_ncols=True)
        self.items_seen = sum(batch_size_at(s, config, micro * runtime.world_size) for s in range(clock.step))
        self.per_item = setup.tokens_per_item or 1
        self.rate_name = "tokens_per_s" if setup.tokens_per_item else "items_per_s"
        self.rate_unit = self.rate_name.removesuffix("_per_s") + "/s"
        self.slowdown = threads.SlowdownWatch(lambda message: tqdm.write(message, file=sys.stderr), self.rate_unit)
        self.restart_window()
        self.plotted_at = self.window_start

    def restart_window(self) -> None:
        """Start measuring throughput afresh: time spent evaluating or saving is not training throughput."""
        self.window_items, self.window_start = 0, time.perf_counter()

    def step(self, clock: Clock, loss: float, lr: float, batch: int, epoch: int) -> None:
        """Advance the bar after a step of `batch` items; every log_every steps, and at the last, log a row."""
        self.items_seen += batch
        self.window_items += batch
        if clock.budget:
            self.bar.update(min(round(clock.progress * clock.budget), self.bar.total) - self.bar.n)
        else:
            self.bar.update(1)
        if not self.runtime.is_main or not (clock.step % self.log_every == 0 or clock.done):
            return
        rate = self.window_items * self.per_item / (time.perf_counter() - self.window_start)
        row = {"step": clock.step, "loss": loss, "lr": lr, self.rate_name: rate, "batch_size": batch, "epoch": epoch}
        if self.setup.tokens_per_item:
            row["tokens"] = self.items_seen * self.per_item
        self.metrics.log(row)
        self.slowdown.observe(rate)
        self.bar.set_postfix(**({"step": clock.step} if clock.budget else {}), loss=f"{loss:.4f}", lr=f"{lr:.2e}",
                             **{self.rate_unit: f"{rate:,.0f}"})
        self.restart_window()

    def validation(self, step: int, val: dict[str, float], samples: list[str]) -> None:
        """Log the validation metrics, append the sample to samples.txt, show both, and redraw the loss plot
        when it is REPLOT_SECONDS old."""
        if val and self.runtime.is_main:
            self.metrics.log({"step": step, **val})
            if samples:
                with (self.out / "samples.txt").open("a") as f:
                    f.write(f"--- step {step}\n{samples[0]}\n")
            shown = ", ".join(f"{k} {v:.4f}" for k, v in val.items())
            tqdm.write(f"step {step}: {shown}" + (f" | sample: {samples[0][:200]!r}" if samples else ""))
            if time.perf_counter() - self.plotted_at >= REPLOT_SECONDS:
                plot_loss(self.metrics.rows, self.out / "loss.png", self.setup.label)
                self.plotted_at = time.perf_counter()
        self.restart_window()

    def close(self) -> None:
        """Close the bar, draw the final loss plot and close metrics.jsonl."""
        self.bar.close()
        if self.runtime.is_main:
            if self.metrics.rows:
                plot_loss(self.metrics.rows, self.out / "loss.png", self.setup.label)
            self.metrics.close()
