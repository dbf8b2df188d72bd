"""Training windows over a packed token stream (and fine-tuning examples), drawn without replacement
and resumable exactly.

An epoch cuts the stream into non-overlapping windows of seq_len + 1 tokens (inputs, and targets
shifted by one), seq_len apart, and visits them in random order. The cut points move by a random
offset each epoch so that no token boundary is always a window edge. Epoch e depends only on
(seed, e), so (epoch, position) is all a checkpoint needs to continue the same sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gptlab.data.shards import Tokens
from gptlab.errors import GptlabError


class EpochStream:
    """Items in a seeded order, epoch after epoch: (epoch, position) is all that resuming needs."""

    unit = "items"
    _also_changed = ""
    """What else, besides the data, decides an epoch's length (named when a saved state no longer fits)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._start_epoch(0)

    @property
    def epoch(self) -> int:
        """The epoch the next item comes from, counting from 0."""
        return self._epoch

    def take(self, n: int) -> np.ndarray:
        """The next `n` items, continuing into the next epoch when this one runs out."""
        parts = [np.empty(0, dtype=np.int64)]
        while n > 0:
            part = self._items[self._position : self._position + n]
            parts.append(part)
            n -= len(part)
            self._position += len(part)
            if self._position == len(self._items):
                self._start_epoch(self._epoch + 1)
        return np.concatenate(parts)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; the data and seed must be those it was saved with."""
        epoch, position = state.get("epoch"), state.get("position")
        if not all(type(v) is int and v >= 0 for v in (epoch, position)):
            raise GptlabError(f"sampler state {state} needs integer epoch and position >= 0")
        items = self._epoch_items(epoch)
        if position > len(items):
            raise GptlabError(
                f"sampler state {state} is past the {len(items)} {self.unit} of epoch {epoch}:"
                f" the training data{self._also_changed} changed since it was saved"
            )
        self._epoch, self._position, self._items = epoch, position, items
        if position == len(items):
            self._start_epoch(epoch + 1)

    def _start_epoch(self, epoch: int) -> None:
        self._epoch, self._position, self._items = epoch, 0, self._epoch_items(epoch)

    def _epoch_items(self, epoch: int) -> np.ndarray:
        raise NotImplementedError


class WindowSampler(EpochStream):
    """Start offsets of training windows, epoch after epoch."""

    unit = "windows"
    _also_changed = " or seq_len"

    def __init__(self, n_tokens: int, seq_len: int, seed: int) -> None:
        _window_count(n_tokens, seq_len)
        self.n_tokens = n_tokens
        self.seq_len = seq_len
        super().__init__(seed)

    def next_starts(self, n: int) -> np.ndarray:
        """The next `n` window starts."""
        return self.take(n)

    def _epoch_items(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        # Offsets up to seq_len - 1 cover every cut position; larger ones would leave no window.
        offset = int(rng.integers(min(self.seq_len, self.n_tokens - self.seq_len)))
        count = (self.n_tokens - 1 - offset) // self.seq_len
        return offset + rng.permutation(count) * self.seq_len


class ExampleSampler(EpochStream):
    """Indices of training examples (fine-tuning), each epoch a fresh seeded permutation of all of them."""

    unit = "examples"

    def __init__(self, n_examples: int, seed: int) -> None:
        if n_examples < 1:
            raise GptlabError("there are no training examples to sample from")
        self.n_examples = n_examples
        super().__init__(seed)

    def _epoch_items(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_examples)


def batch_from_starts(
    tokens: Tokens, starts: np.ndarray, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and targets y, int64 [len(starts), seq_len], y being x shifted by one token.

    Only these windows are read from `tokens`; one may span two shards of a `TokenView`.
    """
    windows = tokens[np.asarray(starts)[:, None] + np.arange(seq_len + 1)]
    windows = torch.from_numpy(windows.astype(np.int64))
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def eval_starts(n_tokens: int, seq_len: int, max_windows: int) -> np.ndarray:
    """Fixed validation windows: all the non-overlapping ones, or max_windows evenly spread."""
    if max_windows < 1:
        raise GptlabError(f"max_windows must be at least 1, got {max_windows}")
    count = _window_count(n_tokens, seq_len)
    picked = np.arange(count)
    if count > max_windows:
        picked = np.linspace(0, count - 1, max_windows).round().astype(np.int64)
    return picked * seq_len


def _window_count(n_tokens: int, seq_len: int) -> int:
    """Windows of seq_len + 1 tokens, seq_len apart, that fit in the stream from its start."""
    if seq_len < 1:
        raise GptlabError(f"seq_len must be at least 1, got {seq_len}")
    if n_tokens < seq_len + 1:
        raise GptlabError(
            f"{n_tokens} {'token is' if n_tokens == 1 else 'tokens are'} too few for one window of seq_len {seq_len}:"
            f" it takes {seq_len + 1} (the inputs and the next-token targets)"
        )
    return (n_tokens - 1) // seq_len
