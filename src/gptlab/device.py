"""The torch device a command runs on, from its --device flag: one place, so every verb says the same."""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """`auto` is this process's GPU when there is one, else the CPU; anything else must exist here."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise GptlabError(f"unknown device {str(name)!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GptlabError("device cuda requested but no GPU is available")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        reason = str(e).strip().split(". ")[0].splitlines()[0] if str(e).strip() else type(e).__name__
        raise GptlabError(f"device {str(device)!r} is not available ({reason})") from None
    return device
