"""Where a run's weights go: a resumable checkpoint at each save point, `<out>/best` whenever validation
improves by the objective's rule, and `<out>/final` at the end. Full or sharded (each process writes its part)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from gptlab import checkpoint
from gptlab.checkpoint.sharded import read_weights
from gptlab.train import distributed
from gptlab.train.checkpointing import save_checkpoint, save_sharded_checkpoint, step_dir, write_sharded
from gptlab.train.prepare import Setup


class Checkpointer:
    """Saves `setup`'s model, tokenizer, optimizer and objective state; `best` is the best validation value so
    far (a resumed run's)."""

    def __init__(self, setup: Setup, optimizer: torch.optim.Optimizer, runtime: distributed.Runtime,
                 best: float | None) -> None:
        config = setup.config
        self.setup, self.optimizer, self.runtime, self.best = setup, optimizer, runtime, best
        self.out = Path(config.out)
        self.sharded = config.checkpoint_format == "sharded" or (
            config.checkpoint_format == "auto" and config.distributed == "fsdp" and runtime.distributed
        )

    def save(self, step: int, elapsed: float) -> Path | None:
        """A checkpoint that resumes exactly at `step`, `elapsed` seconds into the run; every process calls it.
        Its path (None in the processes that do not write it)."""
        setup, runtime = self.setup, self.runtime
        config, model, tokenizer = setup.config, setup.model, setup.tokenizer
        state = {"step": step, "best": self.best, "sampler": setup.objective.state_dict(), "rng": runtime.rng_states(),
                 "config": json.dumps(config.to_dict()), "elapsed": elapsed, "data": setup.data}
        if self.sharded:
            return save_sharded_checkpoint(self.out, step, model, self.optimizer, tokenizer, state, config.keep_checkpoints, runtime)
        weights = distributed.full_weights(model)
        state["optimizer"] = distributed.full_optimizer_state(model, self.optimizer)
        path = save_checkpoint(self.out, step, model, tokenizer, state, config.keep_checkpoints, weights) if runtime.is_main else None
        runtime.barrier()
        return path

    def keep_best(self, step: int, val: dict[str, float]) -> None:
        """Save `<out>/best` when `val` beats the best so far by the objective's rule (metric, "min"/"max").

        With sharded checkpoints the weights pass through a sharded copy, so that no process gathers them.
        """
        rule = self.setup.objective.best
        if not val or not rule:
            return
        name, goal = rule
        if self.best is not None and not (val[name] > self.best if goal == "max" else val[name] < self.best):
            return
        model, tokenizer, runtime = self.setup.model, self.setup.tokenizer, self.runtime
        staged = write_sharded(self.out / ".best.sharded", model, tokenizer, distributed.sharded_state(model), runtime) if self.sharded else None
        _save_full(self.out / "best", model, tokenizer, {"training": {"step": step, **val}}, runtime, staged)
        if staged and runtime.is_main:
            shutil.rmtree(staged)
        self.best = val[name]

    def final(self, step: int, val: dict[str, float]) -> Path:
        """`<out>/final`, from the sharded checkpoint of this last step when there is one."""
        final = self.out / "final"
        shards = step_dir(self.out, step) if self.sharded else None
        _save_full(final, self.setup.model, self.setup.tokenizer, {"training": {"step": step, **val}}, self.runtime, shards)
        return final


def _save_full(path: Path, model: torch.nn.Module, tokenizer, metadata: dict[str, Any], runtime: distributed.Runtime,
               shards: Path | None) -> None:
    """An ordinary single-file checkpoint of `model`: when `shards` names a sharded checkpoint of it, rank 0 reads
    the weights from its files (no collective, no optimizer state), else all processes gather them in rank 0."""
    if shards is None:
        weights = distributed.full_weights(model)
    else:
        weights = read_weights(shards) if runtime.is_main else {}
    if runtime.is_main:
        checkpoint.save(path, model, tokenizer, metadata=metadata, weights=weights)
