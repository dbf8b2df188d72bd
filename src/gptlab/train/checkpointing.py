"""Training checkpoints: gptlab checkpoints plus the state that makes a resume exact.

Each lives in `<out>/checkpoints/step_NNNNNNN/` and is written in one atomic rename, so a kill at any
moment leaves only complete checkpoints. A full one is an ordinary checkpoint (model.safetensors,
gathered in rank 0) with the optimizer state in train_state.pt; a sharded one (checkpoint.sharded)
has each process write its own part of the weights and optimizer state, so none holds them whole.
Resume takes the newest one that loads, warning about any newer one that does not.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gptlab import atomic
from gptlab.checkpoint.io import Checkpoint, load_checkpoint, load_structure, save, write_files
from gptlab.checkpoint.sharded import SHARDS_DIR, is_sharded
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.train import distributed

STATE_FILE = "train_state.pt"
_PREFIX = "step_"


@dataclass
class Resumed:
    lm: Checkpoint
    """For a sharded checkpoint, the model with its weights still unset: `load_shards` fills them."""
    state: dict[str, Any]
    path: Path
    sharded: bool = False


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoint directories, newest first (temporary `.step_*` directories are skipped)."""
    root = out / "checkpoints"
    found = [p for p in root.glob(f"{_PREFIX}*") if p.is_dir() and p.name[len(_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]), reverse=True)


def discard_partial(out: Path) -> None:
    """Remove what a kill in the middle of a save left behind: never a checkpoint, but as large as one when sharded."""
    for tmp in (out / "checkpoints").glob(f".{_PREFIX}*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def step_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"{_PREFIX}{step:07d}"


def save_checkpoint(out: Path, step: int, model: GPT, tokenizer, state: dict[str, Any], keep: int,
                    weights: dict[str, torch.Tensor] | None = None) -> Path:
    """`weights`: the full weights when `model` is sharded (see checkpoint.io.save)."""
    path = save(step_dir(out, step), model, tokenizer, metadata={"training": {"step": step}},
                extra_files={STATE_FILE: _serialise(state)}, weights=weights)
    _prune(out, keep)
    return path


def save_sharded_checkpoint(out: Path, step: int, model: GPT, optimizer: torch.optim.Optimizer, tokenizer,
                            state: dict[str, Any], keep: int, runtime: distributed.Runtime) -> Path:
    """A checkpoint in which each process writes its own part of the weights and optimizer state; every process calls it."""
    path = write_sharded(step_dir(out, step), model, tokenizer, distributed.sharded_state(model, optimizer), runtime,
                         {"training": {"step": step}}, {STATE_FILE: _serialise(state)})
    if runtime.is_main:
        _prune(out, keep)
    return path


def write_sharded(path: Path, model: GPT, tokenizer, shards: dict[str, Any], runtime: distributed.Runtime,
                  metadata: dict[str, Any] | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
    """A sharded checkpoint directory, made whole by one rename in rank 0 once every process has written its file.

    `shards` is `distributed.sharded_state(...)`; rank 0 adds config.json, the tokenizer and `extra_files`.
    """
    with atomic.directory(path) if runtime.is_main else contextlib.nullcontext() as tmp:
        tmp = runtime.gather(tmp)[0]  # rank 0's temporary directory, for every process to write into
        distributed.save_shards(shards, tmp / SHARDS_DIR)
        if runtime.is_main:
            write_files(tmp, model, tokenizer, metadata, extra_files)
    runtime.barrier()  # no process goes on before the checkpoint is in place
    return path


def _serialise(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _prune(out: Path, keep: int) -> None:
    for old in checkpoints(out)[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def load_latest(out: Path, device: str | torch.device) -> Resumed | None:
    """The newest checkpoint that loads completely; None when there is none at all."""
    found = checkpoints(out)
    for path in found:
        try:
            sharded = is_sharded(path)
            lm = load_structure(path) if sharded else load_checkpoint(path, device=device)
            state_file = path / STATE_FILE
            if not state_file.is_file():
                raise GptlabError(f"{state_file} is missing")
            try:
                state = torch.load(state_file, map_location="cpu", weights_only=True)
            except Exception as e:  # any unpickling failure means the file is damaged
                raise GptlabError(f"{state_file} is corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
            return Resumed(lm, state, path, sharded)
        except GptlabError as e:
            print(f"warning: skipping checkpoint {path.name}: {e}", file=sys.stderr)
    if found:
        raise GptlabError(f"no readable checkpoint in {out / 'checkpoints'}; every one of {len(found)} is damaged")
    return None
