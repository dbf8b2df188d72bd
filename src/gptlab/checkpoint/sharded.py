"""Sharded checkpoints: each training process's part of the weights and optimizer state.

FSDP runs write them with torch.distributed.checkpoint (DCP), so no process ever holds the whole
model or optimizer: beside the usual config.json and tokenizer files, `dcp/` holds one
`__<rank>_0.distcp` file per process and DCP's `.metadata`, which says where every piece of every
tensor lies. That index lets any number of processes read the checkpoint back, each only its part,
and lets one process read just the weights (never the optimizer state) to load the model whole:
`gptlab.load`, `generate` and `convert` accept a sharded checkpoint like any other.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

from gptlab.checkpoint.io import Checkpoint, check_vocab, load_checkpoint, load_tokenizer, read_config, read_model_config, save
from gptlab.errors import GptlabError
from gptlab.finetune.heads import TaskModel
from gptlab.model import GPT

SHARDS_DIR = "dcp"
MODEL = "model"
"""The key of the weights in the DCP state; training checkpoints also hold "optimizer"."""
_TIED = "lm_head.weight"  # the same tensor as wte.weight, read once


def is_sharded(path: str | os.PathLike) -> bool:
    return (Path(path) / SHARDS_DIR / ".metadata").is_file()


@contextlib.contextmanager
def single_process_quiet() -> Iterator[None]:
    """DCP warns whenever it runs without a process group, which one process reading or writing alone always does."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def check(path: Path) -> Metadata:
    """DCP's index of a sharded checkpoint, once every shard file it names is there in full."""
    shards = path / SHARDS_DIR
    try:
        metadata = dcp.FileSystemReader(shards).read_metadata()
    except Exception as e:  # any unpickling failure means the index is damaged
        raise GptlabError(f"{shards / '.metadata'} is corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    ends: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        ends[info.relative_path] = max(ends.get(info.relative_path, 0), info.offset + info.length)
    for name, end in sorted(ends.items()):
        file = shards / name
        if not file.is_file() or file.stat().st_size < end:
            raise GptlabError(f"{file} is missing or truncated")
    return metadata


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's full tensors, read piece by piece from every process's shard file into this process alone
    (no process group is used); the optimizer state is not read."""
    metadata = check(path)
    prefix = MODEL + "."
    weights = {
        key[len(prefix):]: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.state_dict_metadata.items()
        if key.startswith(prefix) and key != prefix + _TIED and isinstance(meta, TensorStorageMetadata)
    }
    try:
        with single_process_quiet():
            dcp.load({MODEL: weights}, checkpoint_id=path / SHARDS_DIR, no_dist=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise GptlabError(f"cannot read the sharded weights in {path / SHARDS_DIR} ({reason[:200]})") from None
    return weights


def load_structure(path: Path) -> Checkpoint:
    """The model of a sharded checkpoint with its weights left unset, and its tokenizer.

    A resume fills the weights only after FSDP has sharded the model, each process reading its part;
    building the model on the meta device spares the random initialisation they would overwrite.
    """
    check(path)
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
    from gptlab.checkpoint.hf import check_destination

    src, dst = Path(src), Path(dst)
    check_destination(dst, overwrite)
    if not is_sharded(src):
        raise GptlabError(f"{src} is not a sharded checkpoint: {SHARDS_DIR}/.metadata is missing")
    lm = load_checkpoint(src)
    kept = {key: value for key, value in read_config(src).items() if key not in ("format", "format_version", "model", "task")}
    return save(dst, lm.model, lm.tokenizer, metadata=kept)
