"""Key/value cache for incremental decoding: preallocated, so each step writes in place."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gptlab.model.config import GPTConfig


class KVCache:
    """Keys/values with one slot (row) per sequence, each row at its own length: the one cache of the engine
    (continuous batching, beam search) and of scoring.

    A forward is one of two kinds, set just before it: `prefill(rows)` runs fresh sequences (right-padded)
    into the given rows from position 0, and `decode(stop, tokens)` appends `tokens` tokens to each of rows
    [0, stop) at that row's own length (one when generating; a right-padded continuation when scoring).
    The engine keeps the rows in use packed at [0, active), so that a decode step attends over a view of the
    buffers and never gathers them. `copy` moves rows: packing after a row is freed, beams picked, a shared
    context handed to each of its continuations.
    """

    def __init__(self, config: GPTConfig, slots: int, max_len: int, *, device=None, dtype=torch.float32):
        shape = (slots, config.n_head, max_len, config.d_head)
        # zeros, not empty: attention weighs masked positions by 0, and 0 * NaN would still be NaN
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.max_len = max_len
        self._rows: slice | torch.Tensor = slice(0, 0)
        self._prefilling = False
        self._width = 0  # key positions a decode step attends over: the longest row, plus the new tokens
        self._positions = self._index = torch.zeros(0, 1, dtype=torch.long, device=device)

    def prefill(self, rows: slice | torch.Tensor) -> None:
        self._rows, self._prefilling = rows, True

    def decode(self, stop: int, tokens: int = 1) -> None:
        self._rows, self._prefilling = slice(0, stop), False
        self._width = int(self.lengths[:stop].max()) + tokens
        if self._width > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; a row would reach {self._width}")
        device = self.lengths.device
        # where each row's new tokens go [B, T], and their rows [B, 1]: computed once, used by every layer
        self._positions = self.lengths[:stop, None] + torch.arange(tokens, device=device)
        self._index = torch.arange(stop, device=device)[:, None]

    def layout(self, T: int, window: int | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Positions [B, T] of this forward's tokens, and the dense and local key masks [B, 1, T, keys]
        (None when plain causal attention over the new tokens is right, as in a prefill)."""
        device = self.lengths.device
        if self._prefilling:
            return torch.arange(T, device=device)[None], None, None
        position = self._positions
        keys = torch.arange(self._width, device=device)
        dense = keys <= position[:, :, None]
        local = dense & (keys > position[:, :, None] - window) if window is not None else None
        return position, dense[:, None], None if local is None else local[:, None]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._rows
        if self._prefilling:
            self.keys[layer][rows, :, : k.shape[2]] = k
            self.values[layer][rows, :, : v.shape[2]] = v
            return k, v
        self.keys[layer][self._index, :, self._positions] = k.transpose(1, 2)
        self.values[layer][self._index, :, self._positions] = v.transpose(1, 2)
        return self.keys[layer][rows, :, : self._width], self.values[layer][rows, :, : self._width]

    def advance(self, n: int) -> None:
        if not self._prefilling:
            self.lengths[self._rows] += n

    def copy(self, dst: Sequence[int], src: Sequence[int]) -> None:
        """Row dst[i] takes over what row src[i] holds (sources may repeat, and may be among the destinations)."""
        pairs = [(d, s) for d, s in zip(dst, src, strict=True) if d != s]
        if not pairs:
            return
        to, of = (torch.tensor(rows, device=self.lengths.device) for rows in zip(*pairs, strict=True))
        end = int(self.lengths[of].max())
        for cached in (*self.keys, *self.values):
            cached[to, :, :end] = cached[of, :, :end]  # the right side is gathered first
        self.lengths[to] = self.lengths[of]
