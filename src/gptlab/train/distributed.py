"""Process-group plumbing: single process by default, DDP or FSDP2 when launched by torchrun.

The training loop sees one `Runtime` and never asks how many processes there are, except to take
its share of each batch. Checkpoints hold weights and optimizer state keyed by parameter name,
either full (gathered in rank 0) or sharded (each process writes its part with
torch.distributed.checkpoint), so they load the same way whatever the process count or strategy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    get_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)

from gptlab.checkpoint.sharded import MODEL, single_process_quiet
from gptlab.device import resolve_device
from gptlab.errors import GptlabError

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def mean(self, value: float) -> float:
        """The average of a per-process number over all processes (loss for logging)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether any process has `flag` set, so that all of them act on it at the same step."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's random-number state (its dropout stream), for the checkpoint."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return self.gather({"torch": torch.get_rng_state(), "cuda": cuda})

    def restore_rng(self, states: list[dict[str, Any]]) -> None:
        """Continue this process's random stream from a checkpoint.

        Under another process count there is no stream of its own to continue, so every process
        takes rank 0's: all processes start from the same seed anyway.
        """
        state = states[self.rank] if len(states) == self.world_size else states[0]
        torch.set_rng_state(state["torch"])
        if self.device.type == "cuda" and state.get("cuda") is not None:
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def start(device_name: str) -> Runtime:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on GPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Runtime(0, 1, resolve_device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(dist.get_rank(), world_size, device)


def micro_batch(batch_size: int, micro_batch_size: int | None, world_size: int) -> int:
    """Sequences per forward pass in each process: micro_batch_size, else the process's whole share."""
    share, rest = divmod(batch_size, world_size)
    if rest or not share:
        raise GptlabError(f"batch_size {batch_size} does not split evenly over {world_size} processes")
    micro = micro_batch_size or share
    if share % micro:
        raise GptlabError(
            f"batch_size {batch_size} must be a multiple of micro_batch_size {micro} x {world_size} processes"
        )
    return micro


def wrap(model: torch.nn.Module, runtime: Runtime, strategy: str) -> torch.nn.Module:
    """The module the loop calls: the model itself, or its DDP / FSDP2 wrapper."""
    if not runtime.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.h:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded weights on CPU in rank 0 ({} elsewhere); every process must call it (FSDP gathers)."""
    return get_model_state_dict(model, options=_FULL)


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state, unsharded and keyed by parameter name, in rank 0; called like full_weights."""
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full_optimizer_state() saved by any number of processes; FSDP keeps this process's shard."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """This process's part of the weights and optimizer state, as DCP saves and loads it: under FSDP
    the local shards (nothing is gathered), else the whole, which DCP then writes once."""
    if optimizer is None:
        return {MODEL: get_model_state_dict(model)}
    weights, optimizer_state = get_state_dict(model, optimizer)
    return {MODEL: weights, "optimizer": optimizer_state}


def save_shards(state: dict[str, Any], directory: Path) -> None:
    """Every process writes its part of `state` (sharded_state) to its own file in `directory`; a collective."""
    with single_process_quiet():
        dcp.save(state, checkpoint_id=directory)


def load_shards(model: torch.nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Fill the (wrapped) model and its optimizer from shards saved by any number of processes; each
    process reads only the pieces of its own part. A collective."""
    state = sharded_state(model, optimizer)
    with single_process_quiet():
        dcp.load(state, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=state[MODEL], optim_state_dict=state["optimizer"])
