"""Checkpoint directories a user can inspect: config.json, model.safetensors and the tokenizer files."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptlab import atomic
from gptlab.checkpoint import sharded
from gptlab.device import resolve_device
from gptlab.errors import GptlabError
from gptlab.files import check_destination, read_config_dir
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import TaskModel
from gptlab.model.quantize import Precision, apply_precision, check_precision, is_quantized
from gptlab.model.task import TaskSpec
from gptlab.tokenizer import CharTokenizer, Tokenizer
from gptlab.tokenizer import load_tokenizer as read_tokenizer
from gptlab.tokenizer.simple import CHARS_FILE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "gptlab"
FORMAT_VERSION = 1
_TIED = "lm_head.weight"  # same tensor as wte.weight; stored once
VOCAB_PADDING = 128
"""A model's vocabulary may exceed its tokenizer's up to the next multiple of this (GPT-2's 50257 padded to
50304 for faster matmuls, `gptlab train --vocab-size`); generation never samples the padding ids."""


def save(
    path: str | os.PathLike,
    model: GPT,
    tokenizer: Tokenizer | None,
    metadata: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically: a kill mid-save leaves the previous one intact.

    `extra_files` (name -> bytes) land in the same directory in the same rename, e.g. training state.
    `weights` stand in for `model.state_dict()` when the model is sharded (the full weights, gathered or read
    from a sharded checkpoint).
    A model whose vocabulary does not fit the tokenizer is refused here, not when it first generates.
    A TaskModel is saved as its GPT's tensors plus `head.weight`, with its TaskSpec under "task".
    """
    path = Path(path)
    if is_quantized(model):
        raise GptlabError(f"cannot save {path}: its weights are quantized to int8; save the model loaded with precision='fp32'")
    check_vocab(model.config, tokenizer, f"cannot save {path}", strict=True)
    state = model.state_dict() if weights is None else weights
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if k != _TIED}
    with atomic.directory(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        write_files(tmp, model, tokenizer, metadata, extra_files)
    return path


def write_files(
    directory: Path,
    model: GPT,
    tokenizer: Tokenizer | None,
    metadata: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """Everything of a checkpoint but its weights: config.json, the tokenizer and `extra_files`, into `directory`.

    Shared by `save` and sharded checkpoints (checkpoint.sharded), whose weights are written by each process.
    """
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.config.to_dict(), **(metadata or {})}
    if isinstance(model, TaskModel):
        config["task"] = model.spec.to_dict()
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(directory)
    for name, data in (extra_files or {}).items():
        (directory / name).write_bytes(data)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's config.json, with a one-line error for anything that is not a gptlab checkpoint."""
    path = Path(path)
    config = read_config_dir(path, CONFIG_FILE, "gptlab")
    if config.get("format") != FORMAT:
        hint = ""
        if "model_type" in config:
            hint = f"; it looks like a Hugging Face checkpoint: run `gptlab convert {path} OUT --to gptlab`"
        raise GptlabError(f"{path} is not a gptlab checkpoint{hint}")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise GptlabError(f"{path} was written by a newer gptlab (format {config['format_version']}); upgrade gptlab")
    return config


def read_model_config(path: Path) -> tuple[GPTConfig, TaskSpec | None]:
    """The model a checkpoint directory holds: its config, and its task when fine-tuned for one (GPT-1)."""
    config = read_config(path)
    task = TaskSpec.from_dict(config["task"], f"checkpoint {path}") if "task" in config else None
    return GPTConfig.from_dict(config.get("model", {})), task


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint directory: its model.safetensors, or those of a sharded training checkpoint."""
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        if sharded.is_sharded(path):
            return sharded.read_weights(path)
        raise GptlabError(f"checkpoint {path} has no {WEIGHTS_FILE}")
    return read_weights(weights)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors or PyTorch state-dict file, or a one-line error saying why it cannot be read."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GptlabError(f"{path} is corrupt or truncated ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GptlabError(f"{path} does not hold a state dict of tensors")
    return state


def build_model(
    config: GPTConfig, state: dict[str, torch.Tensor], source: str, task: TaskSpec | None = None
) -> GPT:
    """Instantiate without random init (a TaskModel for a `task`), then fill every tensor; name any mismatch in one line."""
    with torch.device("meta"):
        model = GPT(config) if task is None else TaskModel(config, task)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != _TIED}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s]
    problems = []
    if missing:
        problems.append(f"missing {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected {_summarise(unexpected)}")
    if wrong:
        problems.append(f"shape {_summarise(wrong)}")
    if problems:
        raise GptlabError(f"{source} does not match its model config: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False, assign=True)
    model.lm_head.weight = model.wte.weight
    return model.float().eval()


def _summarise(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def load_tokenizer(path: Path) -> Tokenizer | CharTokenizer | None:
    """The tokenizer saved in a checkpoint directory, or None if it holds no tokenizer files."""
    has_files = any((path / name).is_file() for name in ("vocab.json", "encoder.json", CHARS_FILE))
    return read_tokenizer(path) if has_files else None


def check_vocab(
    config: GPTConfig, tokenizer: Tokenizer | CharTokenizer | None, source: str, strict: bool = False
) -> None:
    """Every token needs an embedding row. `strict` (at save) also refuses rows past padding to a multiple of
    VOCAB_PADDING: such a model was built for another tokenizer (e.g. a preset's 50257 beside a 500-token BPE)."""
    if tokenizer is None:
        return
    tokens, rows = tokenizer.vocab_size, config.vocab_size
    padded = -(-tokens // VOCAB_PADDING) * VOCAB_PADDING
    if tokens > rows or (strict and rows > padded):
        hint = f"; build the model with vocab_size={tokens} (or padded to at most {padded})" if strict else ""
        raise GptlabError(f"{source}: tokenizer has {tokens} tokens but the model's vocab_size is {rows}{hint}")


@dataclass(eq=False)
class Checkpoint:
    """A loaded checkpoint: its model (a TaskModel for a GPT-1 fine-tuned one) and tokenizer. `gptlab.load`
    gives a LanguageModel (gptlab.language_model), which adds generation."""

    model: GPT
    tokenizer: Tokenizer | None
    path: Path | None = None

    @property
    def config(self) -> GPTConfig:
        return self.model.config


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", precision: Precision = "fp32"
) -> Checkpoint:
    """Load a checkpoint directory written by gptlab (training, `convert --to gptlab`, or `save`).

    `device="auto"` picks the GPU when there is one. `precision` ("fp32", "bf16", "int8") converts the
    weights before they move to the device (see gptlab.model.quantize); an int8 model cannot be saved.
    """
    precision = check_precision(precision)
    device = resolve_device(device)
    path = Path(path)
    config, task = read_model_config(path)
    model = build_model(config, load_state(path), f"checkpoint {path}", task)
    tokenizer = load_tokenizer(path)
    check_vocab(config, tokenizer, f"checkpoint {path}")
    return Checkpoint(apply_precision(model, precision).to(device), tokenizer, path)


def load_structure(path: Path) -> Checkpoint:
    """The model of a sharded checkpoint with its weights left unset, and its tokenizer.

    A resume fills the weights only after FSDP has sharded the model, each process reading its part;
    building the model on the meta device spares the random initialisation they would overwrite.
    """
    sharded.check(path)
    config, task = read_model_config(path)
    with torch.device("meta"):
        model = GPT(config) if task is None else TaskModel(config, task)
    model.to_empty(device="cpu")
    model.lm_head.weight = model.wte.weight
    tokenizer = load_tokenizer(path)
    check_vocab(config, tokenizer, f"checkpoint {path}")
    return Checkpoint(model, tokenizer, path)


def consolidate(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """An ordinary single-file checkpoint from a sharded one, keeping its config.json metadata (the training step)."""
    src, dst = Path(src), Path(dst)
    check_destination(dst, overwrite)
    if not sharded.is_sharded(src):
        raise GptlabError(f"{src} is not a sharded checkpoint: {sharded.SHARDS_DIR}/.metadata is missing")
    lm = load_checkpoint(src)
    kept = {key: value for key, value in read_config(src).items() if key not in ("format", "format_version", "model", "task")}
    return save(dst, lm.model, lm.tokenizer, metadata=kept)
