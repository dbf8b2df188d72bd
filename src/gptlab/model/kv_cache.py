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


class SlotCache:
    """Keys/values with one slot per request, for continuous batching.

    Requests join and leave between forwards, so each row has its own length. The engine keeps the rows
    in use packed at [0, active) (moving the last one into a freed slot), so that a decode step attends
    over a view of the buffers and never gathers them. A forward is one of two kinds, set just before it:
    `prefill(start, stop)` runs fresh prompts (right-padded) into rows [start, stop) from position 0, and
    `decode(stop)` appends one token to each of rows [0, stop) at that row's own length.
    """

    def __init__(self, config: GPTConfig, slots: int, max_len: int, *, device=None, dtype=torch.float32):
        shape = (slots, config.n_head, max_len, config.d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.max_len = max_len
        self._rows = slice(0, 0)
        self._prefilling = False
        self._width = 0  # key positions a decode step attends over: the longest row, plus the new token

    def prefill(self, start: int, stop: int) -> None:
        self._rows, self._prefilling = slice(start, stop), True

    def decode(self, stop: int) -> None:
        self._rows, self._prefilling = slice(0, stop), False
        self._width = int(self.lengths[:stop].max()) + 1
        if self._width > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; a row would reach {self._width}")

    def layout(self, T: int, window: int | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Positions [B, T] of this forward's tokens, and the dense and local key masks [B, 1, T, keys]
        (None when plain causal attention over the new tokens is right, as in a prefill)."""
        device = self.lengths.device
        if self._prefilling:
            return torch.arange(T, device=device)[None], None, None
        position = self.lengths[self._rows, None]  # [B, 1]: where each row's new token goes
        keys = torch.arange(self._width, device=device)[None]
        dense = keys <= position
        local = dense & (keys > position - window) if window is not None else None
        return position, dense[:, None, None], None if local is None else local[:, None, None]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._rows
        if self._prefilling:
            self.keys[layer][rows, :, : k.shape[2]] = k
            self.values[layer][rows, :, : v.shape[2]] = v
            return k, v
        index = torch.arange(rows.stop, device=k.device)
        self.keys[layer][index, :, self.lengths[rows]] = k[:, :, 0]
        self.values[layer][index, :, self.lengths[rows]] = v[:, :, 0]
        return self.keys[layer][rows, :, : self._width], self.values[layer][rows, :, : self._width]

    def advance(self, n: int) -> None:
        if not self._prefilling:
            self.lengths[self._rows] += n

    def move(self, src: int, dst: int) -> None:
        """Slot `dst` takes over what `src` holds (the engine packing its rows after one is freed)."""
        end = int(self.lengths[src])
        for cached in (*self.keys, *self.values):
            cached[dst, :, :end] = cached[src, :, :end]
        self.lengths[dst] = self.lengths[src]
