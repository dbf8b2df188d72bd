"""The GPT-3 optimisation recipe: AdamW, decay on matrices only, warmup + cosine to 10%, batch ramp."""

from __future__ import annotations

import math

import torch

from gptlab.train.config import TrainConfig


def build_optimizer(model: torch.nn.Module, config: TrainConfig, lr: float) -> torch.optim.AdamW:
    """Weight decay on matrices (linear weights, embeddings) but not on biases and LayerNorm gains.

    Frozen parameters are left out, and so is decay on a matrix marked `no_weight_decay` (an
    embedding of which only some rows train: decay would move the frozen rows too).
    """
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()  # tied weights once
    decay = [p for p in params if p.dim() >= 2 and not getattr(p, "no_weight_decay", False)]
    no_decay = [p for p in params if p.dim() < 2 or getattr(p, "no_weight_decay", False)]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = all(p.device.type in ("cuda", "cpu") for p in decay)
    return torch.optim.AdamW(groups, lr=lr, betas=(config.beta1, config.beta2), eps=config.eps, fused=fused)


def lr_at(step: int, config: TrainConfig, peak: float) -> float:
    """Linear warmup to the peak, then cosine (GPT-2/3) or linear (GPT-1 fine-tuning) decay to
    min_lr_ratio·peak, flat after that."""
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    decay_steps = (config.lr_decay_steps or config.max_steps) - config.warmup_steps
    floor = peak * config.min_lr_ratio
    if decay_steps <= 0:
        return peak
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    if config.lr_schedule == "linear":
        return peak - (peak - floor) * progress
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


WARMUP_SHARE = 0.1
"""Under a time budget, warmup ends after warmup_steps or a tenth of the budget, whichever comes first."""


def lr_at_time(step: int, progress: float, config: TrainConfig, peak: float) -> float:
    """The schedule over a wall-clock budget, `progress` being the share of it spent: the warmup ramp, capped by
    the decay over the whole budget (cosine or linear to min_lr_ratio·peak at its end)."""
    ramp = max((step + 1) / config.warmup_steps if config.warmup_steps else 1.0, progress / WARMUP_SHARE)
    floor = peak * config.min_lr_ratio
    progress = min(1.0, progress)
    if config.lr_schedule == "linear":
        decayed = peak - (peak - floor) * progress
    else:
        decayed = floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
    return min(peak * min(1.0, ramp), decayed)


def batch_size_at(step: int, config: TrainConfig, multiple: int) -> int:
    """GPT-3's batch ramp: linear growth from batch_ramp_start, in multiples of the micro-batch."""
    if step >= config.batch_ramp_steps:
        return config.batch_size
    start = config.batch_ramp_start or multiple
    size = start + (config.batch_size - start) * step / config.batch_ramp_steps
    return max(multiple, min(config.batch_size, int(size) // multiple * multiple))
