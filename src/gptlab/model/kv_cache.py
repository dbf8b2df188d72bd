"""Key/value cache for incremental decoding: preallocated, so each step writes in place."""

from __future__ import annotations

import torch

from gptlab.model.config import GPTConfig


class KVCache:
    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, *, device=None, dtype=torch.float32):
        shape = (batch_size, config.n_head, max_len, config.d_head)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values for `layer` and return all of them so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; step would reach {end}")
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (finished sequences dropped)."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]

    def reorder(self, indices: torch.Tensor) -> None:
        """Row i takes over what row `indices[i]` held (rows may repeat): beam search continues the beams it
        picked. Rewrites the filled positions in place, so the preallocated buffers are kept."""
        end = self.length
        for cached in (*self.keys, *self.values):
            cached[:, :, :end] = cached[indices, :, :end]
