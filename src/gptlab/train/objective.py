"""What the training loop optimises, as a piece passed in: pretraining, LM fine-tuning and GPT-1 task
fine-tuning are objectives of one loop (trainer.run_loop), which owns everything a run guarantees:
schedule, accumulation, clipping, progress, metrics, atomic checkpoints, exact resume and torchrun.

An objective draws its training items (window starts, example indices) from a stream it can save
and restore, computes the loss on a slice of them, and reports validation metrics. `SampledObjective`
does the drawing, so a new objective writes only its loss and its validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from gptlab.data import WindowSampler, batch_from_starts, eval_starts
from gptlab.data.sampler import EpochStream
from gptlab.data.shards import Tokens

Forward = Callable[..., torch.Tensor]
"""The model as the loop runs it: possibly DDP/FSDP-wrapped and compiled; call it, never its parts."""
Autocast = Callable[[], Any]
"""A context-manager factory: bf16 autocast or a no-op."""


class Objective(Protocol):
    best: tuple[str, str] | None
    """(validation metric, "min" or "max") to keep the best checkpoint by, in `<out>/best`; None keeps none."""

    @property
    def epoch(self) -> int:
        """Full passes over the training items so far."""

    def sample(self, n: int) -> np.ndarray:
        """The next `n` training items of the resumable stream; every process draws the same ones."""

    def loss(self, forward: Forward, items: np.ndarray, autocast: Autocast, device: torch.device) -> torch.Tensor:
        """The mean loss over `items` (a micro-batch), computed through `forward`."""

    def validate(self, model: torch.nn.Module, autocast: Autocast, device: torch.device, batch: int) -> dict[str, float]:
        """Validation metrics named `val_*` (empty without validation data); `model` is in eval mode."""

    def state_dict(self) -> dict[str, Any]:
        """The stream's position, saved in every checkpoint."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SampledObjective:
    """The training items and their resumable position, from `self.sampler`, which a subclass sets up."""

    sampler: EpochStream

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def sample(self, n: int) -> np.ndarray:
        return self.sampler.take(n)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def evaluate(model: torch.nn.Module, objective: Objective, autocast: Autocast, device: torch.device, batch: int,
             sample: Callable[[torch.nn.Module], str] | None) -> tuple[dict[str, float], list[str]]:
    """`objective`'s validation metrics and, when there are any and `sample` is given, a sample of text.

    Every process calls it: an FSDP forward gathers the weights from all of them.
    """
    model.eval()
    val = objective.validate(model, autocast, device, batch)
    samples = [sample(model)] if val and sample else []
    model.train()
    return val, samples


@dataclass
class NextTokenPrediction(SampledObjective):
    """Causal language modelling on packed windows of a token stream (pretraining, and fine-tuning with task `lm`).

    Validation scores a fixed, evenly spread set of windows, in nats per token and bits per byte.
    """

    train: Tokens
    val: Tokens
    seq_len: int
    seed: int
    eval_windows: int
    token_bytes: np.ndarray
    """UTF-8 bytes each token stands for: the denominator of bits per byte."""
    best: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.sampler = WindowSampler(len(self.train), self.seq_len, self.seed)
        self.val_starts = eval_starts(len(self.val), self.seq_len, self.eval_windows) if len(self.val) > self.seq_len else None

    def loss(self, forward: Forward, items: np.ndarray, autocast: Autocast, device: torch.device) -> torch.Tensor:
        x, y = batch_from_starts(self.train, items, self.seq_len)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            logits = forward(x)
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    @torch.no_grad()
    def validate(self, model: torch.nn.Module, autocast: Autocast, device: torch.device, batch: int) -> dict[str, float]:
        if self.val_starts is None:
            return {}
        nll = n_tokens = n_bytes = 0.0
        for i in range(0, len(self.val_starts), batch):
            x, y = batch_from_starts(self.val, self.val_starts[i : i + batch], self.seq_len)
            with autocast():
                logits = model(x.to(device))
            nll += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="sum").item()
            n_tokens += y.numel()
            n_bytes += self.token_bytes[y.numpy()].sum()
        return {"val_loss": nll / n_tokens, "val_bpb": nll / math.log(2) / max(n_bytes, 1)}
