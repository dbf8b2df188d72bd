"""Locally banded attention vs dense causal SDPA: forward+backward time and peak memory.

Each (implementation, T) runs in a fresh process so that its peak resident memory is its own.
Prints one JSON object; `ratio_time` < 1 means the banded kernel is faster than dense.

    python benchmarks/local_attention.py [--window 256] [--lengths 1024 2048 4096 8192]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(impl: str, T: int, window: int, heads: int, d_head: int, repeat: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from gptlab.model import local_attention

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, T, d_head, requires_grad=True) for _ in range(3))
    grad = torch.randn(1, heads, T, d_head)

    def step() -> None:
        if impl == "dense":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = local_attention(q, k, v, window)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up, and the peak-memory sample
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": round(peak_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, T = args.child
        print(json.dumps(measure(impl, int(T), args.window, args.heads, args.d_head, args.repeat, args.threads)))
        return

    def run(impl: str, T: int) -> dict:
        cmd = [sys.executable, __file__, "--child", impl, str(T), "--window", str(args.window), "--heads", str(args.heads),
               "--d-head", str(args.d_head), "--repeat", str(args.repeat), "--threads", str(args.threads)]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    rows = []
    for T in args.lengths:
        dense, local = run("dense", T), run("local", T)
        rows.append({
            "T": T,
            "dense_s": round(dense["seconds"], 4),
            "local_s": round(local["seconds"], 4),
            "ratio_time": round(local["seconds"] / dense["seconds"], 3),
            "dense_peak_mb": dense["peak_mb"],
            "local_peak_mb": local["peak_mb"],
            "local_mb_per_1k_tokens": round(local["peak_mb"] / (T / 1024), 1),
        })
    print(json.dumps({
        "benchmark": "local_attention_fwd_bwd",
        "window": args.window, "heads": args.heads, "d_head": args.d_head, "threads": args.threads,
        "peer": "torch scaled_dot_product_attention(is_causal=True)",
        "goals": {"ratio_time_at_2048": "<= 1.0", "ratio_time_at_8192": "<= 0.35", "local memory": "linear in T"},
        "results": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
