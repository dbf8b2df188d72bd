"""One optimizer step: the batch drawn and shared out over processes and micro-batches, gradients accumulated
and clipped, then the update, unless the loss or gradient is not finite, when the run's `on_nan` policy decides.

Apart from the loop so that accumulation and the NaN policy can be tested on a tiny model in one call.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gptlab import threads
from gptlab.device import bf16_is_fast
from gptlab.errors import GptlabError
from gptlab.train import distributed
from gptlab.train.checkpointing import checkpoints
from gptlab.train.config import TrainConfig
from gptlab.train.objective import Autocast, Forward, Objective


class OptimizerStep:
    """Steps `model` by `optimizer` on items of `objective`, `micro` sequences per forward pass in each process.

    `wrapped` is what runs the forward pass: the model itself or its DDP/FSDP wrapper, compiled when
    `config.compile` asks for it. Under DDP, gradients are all-reduced only at the last micro-batch.
    """

    def __init__(self, model: torch.nn.Module, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 objective: Objective, runtime: distributed.Runtime, config: TrainConfig, micro: int) -> None:
        self.model, self.wrapped, self.optimizer, self.objective = model, wrapped, optimizer, objective
        self.runtime, self.config, self.micro = runtime, config, micro
        self.forward = _one_line_compile_errors(torch.compile(wrapped) if config.compile else wrapped)
        self.bf16 = trains_in_bf16(config, runtime)
        device = runtime.device
        self.autocast: Autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if self.bf16 else contextlib.nullcontext

    def __call__(self, step: int, lr: float, batch: int) -> float:
        """Take step `step + 1` at learning rate `lr` on the next `batch` items; the loss, averaged over processes."""
        runtime, micro = self.runtime, self.micro
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        items = self.objective.sample(batch)
        share = batch // runtime.world_size
        mine = items[runtime.rank * share : (runtime.rank + 1) * share]
        n_micro = share // micro
        loss_sum = 0.0
        for i in range(n_micro):
            sync = i == n_micro - 1 or not runtime.distributed or self.config.distributed == "fsdp"
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                loss = self.objective.loss(self.forward, mine[i * micro : (i + 1) * micro], self.autocast, runtime.device) / n_micro
                loss.backward()
            loss_sum += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        loss_value = runtime.mean(loss_sum)
        if math.isfinite(loss_value) and math.isfinite(float(grad_norm)):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._non_finite(step + 1, lr, loss_value)
        threads.tick(runtime.device)
        return loss_value

    def _non_finite(self, step: int, lr: float, loss: float) -> None:
        """The `on_nan` policy, the update already dropped: stop the run before anything poisoned is saved, or
        skip this step's update and go on."""
        if self.config.on_nan == "stop":
            saved = checkpoints(Path(self.config.out))
            where = f"; the last good checkpoint is {saved[0]}" if saved else ""
            raise GptlabError(
                f"loss became {loss} at step {step} (lr {lr:.3g}); stopped without saving{where}. "
                "Lower the learning rate or set on_nan to skip"
            )
        if self.runtime.is_main:
            tqdm.write(f"warning: non-finite loss at step {step}; skipping the update", file=sys.stderr)


def trains_in_bf16(config: TrainConfig, runtime: distributed.Runtime) -> bool:
    """bf16 autocast when asked for, or under `auto` where the device runs it natively faster. Every process
    takes the same answer: under `auto` each probes its own CPU, and a timing could differ between them."""
    if config.precision != "auto":
        return config.precision == "bf16"
    return runtime.any(bf16_is_fast(runtime.device))


def _one_line_compile_errors(forward: Forward) -> Forward:
    """`forward`, with a torch.compile failure (e.g. no C++ compiler for inductor) as one line."""

    def call(*args: Any, **kwargs: Any) -> torch.Tensor:
        try:
            return forward(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GptlabError(f"torch.compile failed ({reason[:200]}); train with compile off") from None

    return call
