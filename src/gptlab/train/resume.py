"""Resuming a run exactly: the newest checkpoint, the settings it may continue under, and the state it restores.

Everything that decides what happens at step N (weights, optimizer moments, learning rate, data cursor,
RNG) is in the checkpoint, so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch

from gptlab.checkpoint.sharded import SHARDS_DIR
from gptlab.errors import GptlabError
from gptlab.train import distributed
from gptlab.train.checkpointing import Resumed, checkpoints, discard_partial, load_latest
from gptlab.train.config import TrainConfig
from gptlab.train.objective import Objective


def find_resumed(config: TrainConfig, runtime: distributed.Runtime) -> tuple[TrainConfig, Resumed | None]:
    """The settings to run with and, when resuming, the newest checkpoint: settings not given keep the run's own."""
    out = Path(config.out)
    if runtime.is_main:  # it holds the run directory's lock, so no save of another run is under way
        discard_partial(out)
    if not config.resume:
        if checkpoints(out):
            raise GptlabError(f"{out} already holds checkpoints of a run; resume it, or choose another output directory")
        return config, None
    resumed = load_latest(out, "cpu")
    if resumed is None:
        config = dataclasses.replace(config, resume=False)  # a new run after all, checked as one
        if runtime.is_main:
            print(f"warning: nothing to resume in {out}; starting a new run", file=sys.stderr)
        return config, None
    saved = resumed.state.get("config")
    return (config.resumed_from(json.loads(saved)) if saved else config), resumed


# Settings a resumed run may change: they decide how a run is watched and run, not what it computes.
_RESUMABLE_CHANGES = frozenset({
    "out", "resume", "progress", "device", "threads", "tensorboard", "log_every", "eval_every", "eval_windows",
    "save_every", "keep_checkpoints", "sample_tokens", "sample_prompt", "compile", "activation_checkpointing",
    "micro_batch_size", "distributed", "checkpoint_format", "on_nan", "max_steps", "max_minutes",
})


def check_resumable(config: TrainConfig, resumed: Resumed) -> None:
    """Refuse to continue a run under settings other than those it was trained with.

    `config` is resolved (defaults filled). Only the keys in _RESUMABLE_CHANGES may differ; max_steps may change
    (the decay then stretches or shrinks to the new end, unless lr_decay_steps was set: `schedule_change` warns),
    and max_minutes may grow (the decay then stretches over the larger budget).
    """
    saved_json = resumed.state.get("config")
    if saved_json is None:
        return
    saved = json.loads(saved_json)
    current = config.to_dict()
    if current.get("tokenizer", "") is None:  # not given: the checkpoint's own tokenizer is used
        current.pop("tokenizer")
    differ = [key for key in current if key in saved and key not in _RESUMABLE_CHANGES and current[key] != saved[key]]
    if differ:
        changes = ", ".join(f"{key} {saved[key]!r} -> {current[key]!r}" for key in differ)
        raise GptlabError(
            f"resuming with settings that differ from the run in {config.out} ({changes}); "
            "resume with the run's own settings, or start a new run in another output directory"
        )
    step = resumed.state["step"]
    spent = resumed.state.get("elapsed", 0.0) / 60
    if config.max_minutes is not None and spent >= config.max_minutes:
        raise GptlabError(
            f"the run in {config.out} has spent {spent:.1f} of its {config.max_minutes:g} minutes; set a larger "
            "max_minutes to train it further"
        )
    if config.max_steps <= step:
        raise GptlabError(
            f"the run in {config.out} is already at step {step}; set max_steps above {step} to train it further"
        )


def schedule_change(config: TrainConfig, resumed: Resumed) -> str | None:
    """A warning when a resume lays the decay out for another max_steps than the run's: the learning rate then
    jumps (a smaller max_steps compresses the decay, a larger one stretches it)."""
    saved = json.loads(resumed.state.get("config", "{}")).get("max_steps")
    if config.max_minutes is not None or config.lr_decay_steps is not None or saved in (None, config.max_steps):
        return None
    return (
        f"warning: max_steps {saved} -> {config.max_steps}: the learning-rate schedule was laid out for {saved} steps; "
        f"its decay now ends at step {config.max_steps}"
    )


def restore(resumed: Resumed, model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Objective,
            runtime: distributed.Runtime) -> tuple[int, float | None]:
    """Put the optimizer, the data stream and the RNG where the checkpoint left them; (its step, best value so far).

    A full checkpoint's weights are already in `model`; a sharded one's are read here, each process its part,
    resharded for this process count.
    """
    state = resumed.state
    if resumed.sharded:
        distributed.load_shards(model, optimizer, resumed.path / SHARDS_DIR)
    else:
        distributed.load_optimizer_state(model, optimizer, state["optimizer"])
    objective.load_state_dict(state["sampler"])
    runtime.restore_rng(state["rng"])
    return state["step"], state.get("best")
