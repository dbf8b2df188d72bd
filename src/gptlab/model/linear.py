"""nn.Linear, with a faster path for decoding on a CPU.

Decoding multiplies one row (or a few) by each weight matrix, and CPU BLAS runs such a matrix-vector
product on a single thread, so it reads the weights at one core's bandwidth. When the weight is stored
column-major (the inference engine stores it so, see `gptlab.engine`), its [in, out] transpose splits
into two contiguous halves along `in`; one batched matmul over the two halves, summed, streams them on
two threads: about 1.5x faster on a 2-core CPU. Any other input takes nn.Linear's own path.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SPLIT_MAX_ROWS = 16
"""Inputs of at most this many rows (tokens) take the split path: beyond it the matmul is no longer
bound by reading the weights."""


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        rows = x.numel() // self.in_features
        if (
            rows > SPLIT_MAX_ROWS or not weight.t().is_contiguous() or self.in_features % 2 or x.device.type != "cpu"
            or weight.dtype != torch.float32 or torch.is_grad_enabled()
        ):
            return F.linear(x, weight, self.bias)
        half = self.in_features // 2
        halves = x.reshape(rows, 2, half).transpose(0, 1)  # [2, rows, in/2]
        y = torch.bmm(halves, weight.t().view(2, half, self.out_features)).sum(0)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)
