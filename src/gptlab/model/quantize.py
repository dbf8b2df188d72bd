"""Weights in fp32, bf16 or int8, chosen when a model is loaded (`gptlab.load(..., precision=...)`).

int8 keeps each linear layer's weight as int8 [out, in] with one fp32 scale per output channel (symmetric,
absmax/127). On CPU the matmul runs in int8 (`torch._int_mm`, int32 accumulation) with each token's activations
quantized on the fly, because it is the fastest kernel measured there: the 50257x768 output head takes ~2 ms at
batch 1 against 13 ms in fp32 and 3-4 ms for the weight-only `_weight_int8pack_mm` with bf16 activations (37 ms
with fp32 ones), and the block layers at batch 8 run ~2x faster than weight-only. Other devices run weight-only,
dequantizing to the activation dtype: that saves memory, not time."""

from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


def check_precision(precision: str) -> Precision:
    """The precision itself, or a one-line error listing the choices."""
    if precision not in PRECISIONS:
        raise GptlabError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return typing.cast(Precision, precision)


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weight and fp32 per-row scale with weight ≈ q * scale[:, None] (absmax maps to ±127)."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # an all-zero row stays zero
    return torch.round(weight / scale[:, None]).to(torch.int8), scale


class Int8Linear(nn.Module):
    """A bias-optional linear layer with int8 weights (see the module docstring for how it multiplies)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = quantize_rows(linear.weight)
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            weight = self.weight.to(x.dtype) * self.scale[:, None].to(x.dtype)
            return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))
        rows = x.reshape(-1, self.in_features).float()
        step = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12) / 127
        # the transposed view, not a contiguous copy: _int_mm is ~2x faster on the [out, in] layout
        y = torch._int_mm(torch.round(rows / step).to(torch.int8), self.weight.t()) * (step * self.scale)
        if self.bias is not None:
            y += self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def apply_precision(model: GPT, precision: Precision) -> GPT:
    """Convert `model` in place and return it.

    int8 replaces every linear layer of the blocks and the output head; the tied head gets its own int8
    copy of `wte` while `wte` stays a float embedding, since looking up rows needs no matmul.
    """
    precision = check_precision(precision)
    if precision == "fp32":
        return model.float()
    if precision == "bf16":
        return model.to(torch.bfloat16)
    model.float()
    for block in model.h:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear(child))
    model.lm_head = Int8Linear(model.lm_head)
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())
