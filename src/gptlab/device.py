"""The torch device a command runs on, from its --device flag, and whether bf16 pays on it: one place, so every
verb says the same."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import platform
import time
from pathlib import Path

import torch

from gptlab import atomic
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


BF16_PROBE_SPEEDUP = 1.3
"""bf16 autocast pays on a CPU whose bf16 matmul is at least this much faster than its fp32 one."""


def bf16_is_fast(device: torch.device) -> bool:
    """Whether `--precision auto` trains in bf16 autocast on `device`.

    On CUDA, wherever bf16 is supported. On a CPU, only where it has bf16 instructions (AVX-512 BF16 or
    AMX; elsewhere bf16 is emulated and slower) and a timed matmul confirms they beat fp32: probed once
    per CPU model and PyTorch version, the answer cached in ~/.cache/gptlab.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return _cpu_bf16_is_fast()


@functools.cache
def _cpu_bf16_is_fast() -> bool:
    flags, model = _cpu_flags()
    if flags is not None and not flags & {"avx512_bf16", "amx_bf16"}:
        return False
    cache = _cache_dir() / "cpu_bf16.json"
    key = f"{model} | torch {torch.__version__}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):  # a damaged cache is probed afresh and rewritten
        known = {}
    if isinstance(known.get(key), bool):
        return known[key]
    known[key] = _bf16_matmul_speedup() >= BF16_PROBE_SPEEDUP
    with contextlib.suppress(OSError):  # a read-only home only costs the probe again next time
        atomic.write_text(cache, json.dumps(known, indent=1) + "\n")
    return known[key]


def _cpu_flags() -> tuple[set[str] | None, str]:
    """The CPU's feature flags and model name from /proc/cpuinfo; flags None where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return set(fields.get("flags", fields.get("Features", "")).split()), fields.get("model name", platform.machine())


def _bf16_matmul_speedup() -> float:
    """fp32 time over bf16 time of a 512-cube matmul, best of five each (~50 ms)."""
    a = torch.randn(512, 512)
    b = torch.randn(512, 512)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        torch.mm(x, y)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            torch.mm(x, y)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a, b) / best(a.bfloat16(), b.bfloat16())


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptlab"


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
KEEP_FREED_BYTES = 1 << 30
"""Freed memory glibc keeps at the top of the heap instead of handing it back to the OS."""
MMAP_ABOVE_BYTES = 32 << 20
"""Only allocations above this get pages of their own (glibc's largest allowed threshold)."""


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep memory a CPU step frees for the next step, in this process; False where
    malloc is not glibc's.

    Each training step allocates its activations and frees them again. With glibc's defaults the freed top of
    the heap can go back to the OS, so that the next step faults the same pages in afresh: ~2,500 page faults a
    step in a plain loop at nanoGPT's CPU shape. Whether a run settles out of this depends on what the process
    freed before (large frees raise glibc's thresholds); in `gptlab train` runs it measured from none to ~600
    a step. jemalloc or tcmalloc avoid it when preloaded; two mallopt calls do it from inside. The cost: the
    process keeps its peak heap.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mmap_set = mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE_BYTES)
    trim_set = mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    return bool(mmap_set and trim_set)
